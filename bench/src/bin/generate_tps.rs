//! Greedy generation throughput of lmf on CPU, for `scripts/generate_vs_transformers.sh` and
//! `scripts/decode_vs_llamacpp.sh` to put beside transformers' and llama.cpp's numbers
//! (`scripts/hf_generate.py run`, `scripts/decode_bench.py`, measured the same way).
//!
//! usage: `generate_tps [--bf16] <model_dir> <prompts.json> <new_tokens> <repeats> [hf_tokens.json]`
//!
//! `prompts.json` maps each batch size ("1", "4") to its prompts; every row generates exactly
//! `new_tokens` tokens (no eos), timed as the median of `repeats` runs after one warm-up, and
//! printed as one JSON line per batch with tokens/s counting the tokens of all rows. Given
//! transformers' batch-1 tokens, it also says whether ours are the same.
//!
//! With `--bf16` the weights are kept in bf16 (`CausalLM::keep_weights_bf16`, what
//! `infer_dtype: bfloat16` gives `lmf chat` on the CPU).
//!
//! With `LMF_GEN_PROFILE=1` it first runs each batch once through its own copy of the
//! greedy loop and prints where the time goes: prefill, then per decode step the decoder
//! stack (`forward_hidden`), the `lm_head` projection and the arg-max.

use anyhow::{anyhow, bail, Context, Result};
use lmf_autograd::{no_grad, DType, Device, Tensor};
use lmf_models::generate::argmax;
use lmf_models::{generate, CausalLM, GenerationConfig, SeqBatch};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

fn main() -> Result<()> {
    // as `lmf chat` runs: this thread is one of the pool's (`compute_on_this_thread` in
    // src/main.rs)
    let _ = rayon::ThreadPoolBuilder::new()
        .use_current_thread()
        .build_global();
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let bf16 = args.iter().any(|a| a == "--bf16");
    args.retain(|a| a != "--bf16");
    if args.len() != 4 && args.len() != 5 {
        bail!("usage: generate_tps [--bf16] <model_dir> <prompts.json> <new_tokens> <repeats> [hf_tokens.json]");
    }
    let new_tokens: usize = args[2]
        .parse()
        .with_context(|| format!("new_tokens must be a number, got `{}`", args[2]))?;
    let repeats: usize = args[3]
        .parse()
        .with_context(|| format!("repeats must be a number, got `{}`", args[3]))?;
    if repeats == 0 {
        bail!("repeats must be at least 1");
    }
    let mut model = CausalLM::load(Path::new(&args[0]), DType::F32, Device::Cpu)
        .with_context(|| format!("loading the model from {}", args[0]))?;
    let weights = if bf16 { "bf16" } else { "f32" };
    println!(
        "{}",
        json!({"impl": "lmf", "parameters": model.num_parameters(), "weights": weights})
    );
    if bf16 {
        // what `infer_dtype: bfloat16` does for `lmf chat` on the CPU
        model.keep_weights_bf16()?;
    }
    let prompts = read_prompts(Path::new(&args[1]))?;
    let expected = args.get(4).map(|p| read_tokens(Path::new(p))).transpose()?;
    let cfg = GenerationConfig {
        max_new_tokens: new_tokens,
        do_sample: false,
        eos_token_ids: vec![],
        ..Default::default()
    };
    if std::env::var_os("LMF_GEN_PROFILE").is_some_and(|v| v != "0") {
        for rows in prompts.values() {
            profile(&model, rows, new_tokens)?;
        }
    }
    for (&b, rows) in &prompts {
        let mut out = generate(&model, rows, &cfg, |_, _| {})?; // warm-up
        let mut times = Vec::with_capacity(repeats);
        for _ in 0..repeats {
            let t = Instant::now();
            out = generate(&model, rows, &cfg, |_, _| {})?;
            times.push(t.elapsed());
        }
        if let Some(short) = out.iter().find(|o| o.len() != new_tokens) {
            bail!("lmf stopped after {} of {new_tokens} tokens", short.len());
        }
        let runs: Vec<f64> = times
            .iter()
            .map(|t| (t.as_secs_f64() * 1e4).round() / 1e4)
            .collect();
        let s = median(&mut times).as_secs_f64();
        println!(
            "{}",
            json!({
                "impl": "lmf",
                "batch": b,
                "new_tokens": new_tokens,
                "seconds": (s * 1e4).round() / 1e4,
                "tokens_per_s": (b as f64 * new_tokens as f64 / s * 10.0).round() / 10.0,
                "runs": runs,
            })
        );
        if let (1, Some(exp)) = (b, &expected) {
            println!("{}", compare(&out[0], exp));
        }
    }
    Ok(())
}

/// `prompts.json`: `{"1": [[ids]], "4": [[ids], ...]}`.
fn read_prompts(path: &Path) -> Result<BTreeMap<usize, Vec<Vec<u32>>>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let v: BTreeMap<String, Vec<Vec<u32>>> = serde_json::from_str(&text)
        .with_context(|| format!("{}: expected {{\"batch\": [[token ids]]}}", path.display()))?;
    v.into_iter()
        .map(|(k, rows)| {
            let b = k
                .parse()
                .map_err(|_| anyhow!("{}: key `{k}` is not a batch size", path.display()))?;
            if b == 0 || rows.len() != b {
                bail!("{}: batch `{k}` has {} rows", path.display(), rows.len());
            }
            Ok((b, rows))
        })
        .collect()
}

/// Transformers' batch-1 new tokens: `[[ids]]`.
fn read_tokens(path: &Path) -> Result<Vec<u32>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let v: Vec<Vec<u32>> = serde_json::from_str(&text)
        .with_context(|| format!("{}: expected [[token ids]]", path.display()))?;
    v.into_iter()
        .next()
        .ok_or_else(|| anyhow!("{}: no rows", path.display()))
}

/// A JSON line saying whether `ours` equals `theirs`, and where they first differ.
fn compare(ours: &[u32], theirs: &[u32]) -> Value {
    let first = ours
        .iter()
        .zip(theirs)
        .position(|(a, b)| a != b)
        .or((ours.len() != theirs.len()).then_some(ours.len().min(theirs.len())));
    json!({
        "impl": "lmf",
        "batch": 1,
        "same_tokens_as_transformers": first.is_none(),
        "first_difference": first,
        "compared": ours.len().min(theirs.len()),
    })
}

/// Median of `t` (sorts it).
fn median(t: &mut [Duration]) -> Duration {
    t.sort();
    let n = t.len();
    if n % 2 == 1 {
        t[n / 2]
    } else {
        (t[n / 2 - 1] + t[n / 2]) / 2
    }
}

/// One greedy run split into phases (the same steps as `lmf_models::generate`, without
/// eos handling), printed as a JSON line of milliseconds.
fn profile(model: &CausalLM, prompts: &[Vec<u32>], new_tokens: usize) -> Result<()> {
    let ms = |d: Duration| (d.as_secs_f64() * 1e5).round() / 100.0;
    no_grad(|| -> Result<()> {
        let mut cache = model.new_cache(prompts.len());
        let mut feed = prompts.to_vec();
        let (mut stack, mut head, mut pick) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        let mut prefill = Duration::ZERO;
        for step in 0..new_tokens {
            let t0 = Instant::now();
            let batch = SeqBatch::with_offsets(&feed, cache.lens());
            let h = model.forward_hidden(&batch, Some(&mut cache))?;
            let t1 = Instant::now();
            let rows: Vec<i64> = batch.last_token_rows().iter().map(|&r| r as i64).collect();
            let rows = Tensor::from_vec(rows, &[batch.num_seqs()], Device::Cpu)?;
            let logits = model.logits(&h.index_select(&rows, 0)?)?;
            let logits = logits.tensor().to_vec::<f32>()?;
            let t2 = Instant::now();
            let vocab = logits.len() / feed.len();
            feed = logits.chunks(vocab).map(|row| vec![argmax(row)]).collect();
            let t3 = Instant::now();
            if step == 0 {
                prefill = t3 - t0;
            } else {
                stack += t1 - t0;
                head += t2 - t1;
                pick += t3 - t2;
            }
        }
        let steps = new_tokens.saturating_sub(1).max(1) as u32;
        println!(
            "{}",
            json!({
                "impl": "lmf",
                "profile_batch": prompts.len(),
                "prefill_ms": ms(prefill),
                "decode_steps": new_tokens.saturating_sub(1),
                "per_step_ms": {
                    "decoder_stack": ms(stack / steps),
                    "lm_head": ms(head / steps),
                    "argmax": ms(pick / steps),
                },
            })
        );
        Ok(())
    })
}
