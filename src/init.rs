//! `lmf init <dir>`: writes a tiny, randomly initialised Llama model folder that every tool
//! (lmf, transformers, LLaMA-Factory) loads — `config.json`, `generation_config.json`,
//! `model.safetensors`, and a byte-level BPE `tokenizer.json` trained on the demo data — so
//! the quickstart runs on a fresh, offline machine where no model can be downloaded.
//!
//! The tokenizer carries ChatML's special tokens, so the `qwen`/`chatml` templates add none
//! (a template that adds tokens would outgrow the embedding).

use anyhow::{bail, Context, Result};
use lmf_runtime::{DType, Device, Tensor};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, NormalizerWrapper, PostProcessorWrapper, TokenizerBuilder};

/// End-of-text, start-of-turn and end-of-turn (ChatML), in this id order after the BPE vocab.
const SPECIAL_TOKENS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// ChatML as a Jinja chat template, so `lmf chat` works without `template:` too.
const CHAT_TEMPLATE: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// Shape of the model `lmf init` writes.
#[derive(Clone, Debug, clap::Args)]
#[command(rename_all = "snake_case")]
pub struct InitArgs {
    /// Folder to create (must not exist or be empty).
    pub dir: PathBuf,
    /// Folder whose `.json`/`.jsonl`/`.txt` files train the tokenizer.
    #[arg(long, default_value = "data")]
    pub dataset_dir: PathBuf,
    /// BPE vocabulary size before the special tokens.
    #[arg(long, default_value_t = 2048)]
    pub vocab_size: usize,
    /// Hidden size.
    #[arg(long, default_value_t = 256)]
    pub hidden_size: usize,
    /// MLP width.
    #[arg(long, default_value_t = 688)]
    pub intermediate_size: usize,
    /// Decoder layers.
    #[arg(long, default_value_t = 4)]
    pub num_hidden_layers: usize,
    /// Attention heads.
    #[arg(long, default_value_t = 4)]
    pub num_attention_heads: usize,
    /// Key/value heads (GQA).
    #[arg(long, default_value_t = 2)]
    pub num_key_value_heads: usize,
    /// Model vocabulary (embedding rows) at least this large: the tokenizer's ids come first,
    /// the rest are padding rows (as Qwen pads its vocab), so a model of a real vocab size
    /// (e.g. Llama 3's 128256) can be built for benchmarks.
    #[arg(long, default_value_t = 0)]
    pub pad_vocab_to: usize,
    /// Share the embedding with the output head (`tie_word_embeddings`).
    #[arg(long, default_value_t = false)]
    pub tie_word_embeddings: bool,
    /// Seed of the weight initialisation.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// Runs `lmf init`.
pub fn run(a: &InitArgs) -> Result<()> {
    if a.dir.exists() && a.dir.read_dir()?.next().is_some() {
        bail!("{}: folder exists and is not empty", a.dir.display());
    }
    if a.num_attention_heads == 0
        || a.num_key_value_heads == 0
        || !a.hidden_size.is_multiple_of(a.num_attention_heads)
        || !a.num_attention_heads.is_multiple_of(a.num_key_value_heads)
    {
        bail!(
            "hidden_size {} / num_attention_heads {} / num_key_value_heads {}: heads must divide \
             hidden_size and kv heads must divide heads",
            a.hidden_size,
            a.num_attention_heads,
            a.num_key_value_heads
        );
    }
    let corpus = read_corpus(&a.dataset_dir)?;
    std::fs::create_dir_all(&a.dir).with_context(|| format!("creating {}", a.dir.display()))?;
    let tok_vocab = write_tokenizer(&a.dir, &corpus, a.vocab_size)?;
    let eos = tok_vocab - 1; // <|im_end|>
    let pad = tok_vocab - 3;
    let vocab = tok_vocab.max(a.pad_vocab_to);
    let config = json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": a.hidden_size,
        "intermediate_size": a.intermediate_size,
        "num_hidden_layers": a.num_hidden_layers,
        "num_attention_heads": a.num_attention_heads,
        "num_key_value_heads": a.num_key_value_heads,
        "head_dim": a.hidden_size / a.num_attention_heads,
        "hidden_act": "silu",
        "max_position_embeddings": 2048,
        "initializer_range": 0.02,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "attention_bias": false,
        "mlp_bias": false,
        "tie_word_embeddings": a.tie_word_embeddings,
        "vocab_size": vocab,
        "bos_token_id": null,
        "eos_token_id": eos,
        "pad_token_id": pad,
        "torch_dtype": "float32",
    });
    write_json(&a.dir.join("config.json"), &config)?;
    let gen = json!({ "eos_token_id": eos, "pad_token_id": pad, "do_sample": false });
    write_json(&a.dir.join("generation_config.json"), &gen)?;
    write_weights(&a.dir.join("model.safetensors"), a, vocab)?;
    eprintln!(
        "wrote a {}-layer Llama (hidden {}, vocab {vocab}) to {}",
        a.num_hidden_layers,
        a.hidden_size,
        a.dir.display()
    );
    Ok(())
}

/// Every string value of every `.json`/`.jsonl` row and every `.txt` line under `dir`.
fn read_corpus(dir: &Path) -> Result<Vec<String>> {
    fn strings(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) if !s.is_empty() => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
            Value::Object(o) => o.values().for_each(|x| strings(x, out)),
            _ => {}
        }
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot read the tokenizer corpus folder", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let ext = f.extension().and_then(|e| e.to_str()).unwrap_or("");
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name == "dataset_info.json" {
            continue;
        }
        let text = match ext {
            "json" | "jsonl" | "txt" => std::fs::read_to_string(&f)
                .with_context(|| format!("{}: cannot read", f.display()))?,
            _ => continue,
        };
        match ext {
            "json" => strings(
                &serde_json::from_str(&text).with_context(|| format!("{}", f.display()))?,
                &mut out,
            ),
            "jsonl" => {
                for (i, line) in text
                    .lines()
                    .enumerate()
                    .filter(|(_, l)| !l.trim().is_empty())
                {
                    let v: Value = serde_json::from_str(line)
                        .with_context(|| format!("{} line {}", f.display(), i + 1))?;
                    strings(&v, &mut out);
                }
            }
            _ => out.extend(text.lines().map(str::to_string)),
        }
    }
    if out.is_empty() {
        bail!(
            "{}: no .json/.jsonl/.txt text to train the tokenizer on",
            dir.display()
        );
    }
    Ok(out)
}

/// Trains the byte-level BPE, writes `tokenizer.json` + `tokenizer_config.json`; returns the
/// vocabulary size including the special tokens.
fn write_tokenizer(dir: &Path, corpus: &[String], vocab_size: usize) -> Result<usize> {
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut tok = TokenizerBuilder::<
        BPE,
        NormalizerWrapper,
        ByteLevel,
        PostProcessorWrapper,
        ByteLevel,
    >::new()
    .with_model(BPE::default())
    .with_pre_tokenizer(Some(ByteLevel::new(false, true, true)))
    .with_decoder(Some(ByteLevel::default()))
    .build()
    .map_err(|e| anyhow::anyhow!("building the tokenizer: {e}"))?;
    tok.train(&mut trainer, corpus.iter())
        .map_err(|e| anyhow::anyhow!("training the tokenizer: {e}"))?;
    let specials: Vec<AddedToken> = SPECIAL_TOKENS
        .iter()
        .map(|t| AddedToken::from(*t, true))
        .collect();
    tok.add_special_tokens(&specials);
    let vocab = tok.get_vocab_size(true);
    let path = dir.join("tokenizer.json");
    tok.save(&path, true)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut decoder = BTreeMap::new();
    for t in SPECIAL_TOKENS {
        let id = tok
            .token_to_id(t)
            .with_context(|| format!("special token {t} missing after training"))?;
        decoder.insert(
            id.to_string(),
            json!({"content": t, "lstrip": false, "normalized": false, "rstrip": false,
                   "single_word": false, "special": true}),
        );
    }
    let config = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "added_tokens_decoder": decoder,
        "bos_token": null,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": null,
        "model_max_length": 2048,
        "clean_up_tokenization_spaces": false,
        "chat_template": CHAT_TEMPLATE,
    });
    write_json(&dir.join("tokenizer_config.json"), &config)?;
    Ok(vocab)
}

/// Random weights as HF initialises a Llama: normal(0, 0.02) matrices, RMSNorm weights 1.
fn write_weights(path: &Path, a: &InitArgs, vocab: usize) -> Result<()> {
    let (h, i) = (a.hidden_size, a.intermediate_size);
    let hd = h / a.num_attention_heads;
    let (q, kv) = (a.num_attention_heads * hd, a.num_key_value_heads * hd);
    let mut shapes: Vec<(String, Vec<usize>, bool)> =
        vec![("model.embed_tokens.weight".into(), vec![vocab, h], false)];
    for l in 0..a.num_hidden_layers {
        let p = format!("model.layers.{l}");
        for (n, s) in [
            ("self_attn.q_proj", [q, h]),
            ("self_attn.k_proj", [kv, h]),
            ("self_attn.v_proj", [kv, h]),
            ("self_attn.o_proj", [h, q]),
            ("mlp.gate_proj", [i, h]),
            ("mlp.up_proj", [i, h]),
            ("mlp.down_proj", [h, i]),
        ] {
            shapes.push((format!("{p}.{n}.weight"), s.to_vec(), false));
        }
        shapes.push((format!("{p}.input_layernorm.weight"), vec![h], true));
        shapes.push((
            format!("{p}.post_attention_layernorm.weight"),
            vec![h],
            true,
        ));
    }
    shapes.push(("model.norm.weight".into(), vec![h], true));
    if !a.tie_word_embeddings {
        shapes.push(("lm_head.weight".into(), vec![vocab, h], false));
    }
    let mut tensors = Vec::new();
    for (k, (name, shape, ones)) in shapes.into_iter().enumerate() {
        let t = if ones {
            Tensor::ones(&shape, DType::F32, Device::Cpu)?
        } else {
            Tensor::randn(a.seed, (k as u64) << 40, &shape, DType::F32, Device::Cpu)?.scale(0.02)?
        };
        let bytes: Vec<u8> = t
            .to_vec::<f32>()?
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        tensors.push((name, shape, bytes));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, s, b)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
        })
        .collect::<std::result::Result<_, _>>()?;
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    let tmp = path.with_extension("safetensors.tmp");
    safetensors::serialize_to_file(views, Some(meta), &tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// Pretty JSON through a temp name + rename.
fn write_json(path: &Path, v: &Value) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(v)? + "\n")
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}
