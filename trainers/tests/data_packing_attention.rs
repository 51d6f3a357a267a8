//! Packed rows make our model compute LLaMA-Factory's loss: the `segments` and `position_ids`
//! of plain `packing` (one segment per row: attention crosses sub-sequences, as LF on sdpa) and
//! of `neat_packing` (one segment per sub-sequence) fed to the tiny Llama 3 give the eval losses
//! LF's collator + transformers give on the same rows (`encoded.json` → `attention`). The rows
//! carry the Llama 3 tool prompt, so they are rendered with the fixture's `tool_date`.

use std::path::Path;

use lmf_models::{CausalLM, SeqBatch, Tokenizer};
use lmf_runtime::{DType, Device};
use lmf_trainers::args::finetuning::Stage;
use lmf_trainers::args::DataArguments;
use lmf_trainers::data::{get_dataset, DataOptions, Example, IGNORE_INDEX};
use lmf_trainers::template::{Template, TemplateOptions};

const HF: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/hf");

fn fixture() -> serde_json::Value {
    let text = std::fs::read_to_string(format!("{HF}/data/encoded.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn packed_rows(neat: bool, tool_date: &str) -> Vec<Example> {
    let dir = Path::new(HF).join("models/llama3");
    let mut tok = Tokenizer::from_dir(&dir).unwrap();
    let mut t =
        Template::for_tokenizer(Some("llama3"), &mut tok, &TemplateOptions::default()).unwrap();
    t.set_tool_date(Some(tool_date.to_string()));
    // the fixture's cases llama3_sharegpt_packing / llama3_sharegpt_neat_packing
    let mut a = DataArguments {
        template: Some("llama3".into()),
        dataset: Some(vec!["sharegpt".into()]),
        dataset_dir: format!("{HF}/data/sets"),
        cutoff_len: 256,
        packing: Some(true),
        neat_packing: neat,
        ..DataArguments::default()
    };
    a.post_init().unwrap();
    let opts = DataOptions {
        do_train: true,
        seed: 42,
        ..DataOptions::default()
    };
    get_dataset(&t, &tok, &a, Stage::Sft, &opts).unwrap().train
}

/// Token-mean cross-entropy of the rows, labels shifted within each row (as HF does).
fn loss(model: &CausalLM, rows: &[Example]) -> f64 {
    let mut batch = SeqBatch {
        ids: vec![],
        cu_seqlens: vec![0],
        positions: vec![],
    };
    for r in rows {
        batch.ids.extend(&r.input_ids);
        batch
            .positions
            .extend(r.position_ids.iter().map(|&p| p as i64));
        for s in &r.segments {
            let last = *batch.cu_seqlens.last().unwrap();
            batch.cu_seqlens.push(last + s);
        }
    }
    let hidden = model.forward_hidden(&batch, None).unwrap();
    let logits = model.logits(&hidden).unwrap();
    let vocab = *logits.tensor().shape().last().unwrap();
    let logits = logits.tensor().to_vec::<f32>().unwrap();
    let (mut total, mut count) = (0f64, 0usize);
    let mut offset = 0;
    for r in rows {
        for t in 0..r.len() - 1 {
            let target = r.labels[t + 1];
            if target == IGNORE_INDEX {
                continue;
            }
            let row = &logits[(offset + t) * vocab..(offset + t + 1) * vocab];
            let max = row.iter().fold(f32::MIN, |m, &x| m.max(x)) as f64;
            let lse = max
                + row
                    .iter()
                    .map(|&x| (x as f64 - max).exp())
                    .sum::<f64>()
                    .ln();
            total += lse - row[target as usize] as f64;
            count += 1;
        }
        offset += r.len();
    }
    total / count as f64
}

#[test]
fn packed_losses_match_llamafactory() {
    let fx = fixture();
    let a = &fx["attention"];
    let date = fx["tool_date"]
        .as_str()
        .expect("fixture records its tool_date");
    let model = CausalLM::load(
        &Path::new(HF).join("models/llama3"),
        DType::F32,
        Device::Cpu,
    )
    .unwrap();
    let plain_rows = packed_rows(false, date);
    let neat_rows = packed_rows(true, date);
    assert!(plain_rows
        .iter()
        .any(|r| r.position_ids.iter().filter(|&&p| p == 0).count() > 2));
    let plain = loss(&model, &plain_rows);
    let neat = loss(&model, &neat_rows);
    let want_plain = a["plain_loss"].as_f64().unwrap();
    let want_neat = a["neat_loss"].as_f64().unwrap();
    assert!(
        (plain - want_plain).abs() / want_plain < 1e-4,
        "plain {plain} vs LF {want_plain}"
    );
    assert!(
        (neat - want_neat).abs() / want_neat < 1e-4,
        "neat {neat} vs LF {want_neat}"
    );
    // and the two differ: the segments matter
    assert!(
        (plain - neat).abs() / neat > 1e-3,
        "plain {plain} neat {neat}"
    );
}
