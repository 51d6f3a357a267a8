//! `do_predict` with `predict_with_generate`: LLaMA-Factory's `run_sft` prediction. Each eval
//! row's prompt (`input_ids`) is continued with `lmf_models::generate` under the
//! `GeneratingArguments` (eos = the tokenizer's eos + additional special tokens, as LF's
//! workflow sets it), and `generated_predictions.jsonl` gets one
//! `{"prompt", "predict", "label"}` line per row exactly as LF's `save_predictions` decodes
//! them (prompt with special tokens; prediction and label per `skip_special_tokens`; `-100`
//! labels as the pad token). `predict_results.json` holds LF's `ComputeSimilarity` scores of
//! the predictions against the labels (both decoded without special tokens:
//! `predict_rouge-1/2/l`, `predict_bleu-4`, [`crate::train::similarity`]) and the speed
//! metrics.

use std::path::Path;
use std::time::Instant;

use lmf_models::{generate, CausalLM, GenerationConfig, Tokenizer};

use crate::args::generating::{GenerateRequest, GeneratingArguments};
use crate::data::{Example, IGNORE_INDEX};
use crate::template::pyjson::PyJson;
use crate::train::io::{py_round, write_atomic};
use crate::train::results::save_metrics;
use crate::train::similarity::similarity_metrics;
use crate::{Error, Result};

/// LF `save_predictions`' file.
pub const PREDICTIONS_FILE: &str = "generated_predictions.jsonl";

/// The decoding settings of prediction: LF's `GeneratingArguments.to_dict()` rules (via
/// [`GeneratingArguments::to_generate_config`]) for a prompt of `prompt_len` tokens.
pub fn prediction_config(
    gen: &GeneratingArguments,
    tok: &Tokenizer,
    prompt_len: usize,
    seed: u64,
) -> Result<(GenerationConfig, bool)> {
    let g = gen.to_generate_config(&GenerateRequest::default());
    if g.num_return_sequences != 1 || g.num_beams != 1 {
        return Err(Error::Msg(
            "prediction with num_beams or num_return_sequences > 1 is not implemented yet".into(),
        ));
    }
    let max_new = match (g.max_new_tokens, g.max_length) {
        (Some(n), _) => n.max(0) as usize,
        (None, Some(total)) => (total.max(0) as usize).saturating_sub(prompt_len),
        (None, None) => 20usize.saturating_sub(prompt_len),
    };
    let mut eos: Vec<u32> = tok.eos_token_id().into_iter().collect();
    for id in tok.additional_special_tokens_ids() {
        if !eos.contains(&id) {
            eos.push(id);
        }
    }
    Ok((
        GenerationConfig {
            max_new_tokens: max_new,
            do_sample: g.do_sample,
            temperature: g.temperature.unwrap_or(1.0),
            top_p: g.top_p.unwrap_or(1.0),
            top_k: g.top_k.max(0) as usize,
            repetition_penalty: g.repetition_penalty,
            eos_token_ids: eos,
            seed,
        },
        g.skip_special_tokens,
    ))
}

/// Generates for every row (batches of `batch_size`), writes `generated_predictions.jsonl` and
/// `predict_results.json` into `out`, and returns the `predict_*` metrics.
pub fn predict(
    model: &CausalLM,
    tok: &Tokenizer,
    rows: &[Example],
    gen: &GeneratingArguments,
    batch_size: usize,
    seed: u64,
    out: &Path,
) -> Result<Vec<(String, PyJson)>> {
    let start = Instant::now();
    let pad = tok.pad_token_id().or(tok.eos_token_id()).unwrap_or(0);
    let mut lines = String::new();
    let (mut preds, mut refs) = (vec![], vec![]);
    let bs = batch_size.max(1);
    for (b, chunk) in rows.chunks(bs).enumerate() {
        let prompts: Vec<Vec<u32>> = chunk.iter().map(|r| r.input_ids.clone()).collect();
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let (cfg, skip) = prediction_config(gen, tok, longest, seed)?;
        let outs = generate(model, &prompts, &cfg, |_, _| {})
            .map_err(|e| Error::Msg(format!("predicting batch {b}: {e}")))?;
        for (row, new) in chunk.iter().zip(outs) {
            let labels: Vec<u32> = row
                .labels
                .iter()
                .map(|&l| if l == IGNORE_INDEX { pad } else { l as u32 })
                .collect();
            let line = PyJson::Dict(vec![
                (
                    "prompt".into(),
                    PyJson::Str(tok.decode(&row.input_ids, false)?),
                ),
                ("predict".into(), PyJson::Str(tok.decode(&new, skip)?)),
                ("label".into(), PyJson::Str(tok.decode(&labels, skip)?)),
            ]);
            lines.push_str(&line.dumps());
            lines.push('\n');
            // ComputeSimilarity decodes with skip_special_tokens=True whatever the generating
            // arguments say.
            preds.push(tok.decode(&new, true)?);
            refs.push(tok.decode(&labels, true)?);
        }
    }
    std::fs::create_dir_all(out).map_err(|e| Error::Msg(format!("{}: {e}", out.display())))?;
    write_atomic(&out.join(PREDICTIONS_FILE), lines.as_bytes())?;
    let mut metrics: Vec<(String, PyJson)> = similarity_metrics(&preds, &refs)
        .into_iter()
        .map(|(k, v)| (format!("predict_{k}"), PyJson::Float(v)))
        .collect();
    let runtime = start.elapsed().as_secs_f64().max(1e-9);
    metrics.extend([
        (
            "predict_runtime".to_string(),
            PyJson::Float(py_round(runtime, 4)),
        ),
        (
            "predict_samples_per_second".to_string(),
            PyJson::Float(py_round(rows.len() as f64 / runtime, 3)),
        ),
        (
            "predict_steps_per_second".to_string(),
            PyJson::Float(py_round(rows.len().div_ceil(bs) as f64 / runtime, 3)),
        ),
    ]);
    save_metrics(out, "predict", &metrics)?;
    Ok(metrics)
}
