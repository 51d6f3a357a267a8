//! `lmf train` against LLaMA-Factory 0.9.5 itself: the sft / pt / eval / predict cases of
//! `tests/fixtures/hf/train/cases/` (written by `make_train.py` from real LF runs: LoRA resumed
//! from a non-zero PEFT adapter on Llama and Qwen2 with packing, full, freeze, pt, eval-only,
//! predict, QLoRA 4-bit and 8-bit, LoRA on the embeddings and the head) are run through the `lmf` binary on the same YAML, and the outputs are compared:
//! every logged loss (≤ 1e-3 relative), learning rate and epoch, `eval_loss` (≤ 1e-4
//! relative), `train_loss`, greedy `generated_predictions.jsonl` (identical), the output file
//! names and the adapter config's keys. The rm / dpo / kto cases are `train_pref_parity.rs`.

mod common;

use common::{
    case_dir, check_adapter_config, check_files_except, check_logs, check_logs_within,
    check_results, read_jsonl, rel, run_lmf_train, run_lmf_train_with,
};
use serde_json::Value;

/// Runs one case; returns lmf's output folder.
fn run_case(case: &str) -> std::path::PathBuf {
    run_lmf_train("lfparity", case)
}

/// Runs one case and checks its logs, results, output files, adapter config and predictions
/// against LF's.
fn check_case(case: &str) {
    let ours = run_case(case);
    let dir = case_dir(case);
    if dir.join("trainer_log.jsonl").is_file() && ours.join("trainer_log.jsonl").is_file() {
        check_logs(case, &ours);
    }
    check_results(case, &ours);
    check_files_except(case, &ours, &[]);
    check_adapter_config(case, &ours);
    let pred = dir.join("generated_predictions.jsonl");
    if pred.is_file() {
        let a = std::fs::read_to_string(&pred).unwrap();
        let b = std::fs::read_to_string(ours.join("generated_predictions.jsonl")).unwrap();
        assert_eq!(a, b, "{case}: generated_predictions.jsonl differs");
    }
    let _ = std::fs::remove_dir_all(&ours);
}

#[test]
fn lora_llama_matches_llamafactory() {
    check_case("lora_llama");
}

/// `bf16: true` (+ the `use_cpu` transformers wants) on the CPU: LF trains under torch's CPU
/// autocast (bf16 matmuls, fp32 weights), lmf with bf16 products and fp32 weights. Every
/// logged loss and eval loss within 2e-2 relative of LF's, the output files LF's; and the run
/// really multiplies in bf16: its losses are not those of the same YAML in fp32.
#[test]
fn lora_bf16_llama_tracks_llamafactory_autocast() {
    let case = "lora_bf16_llama";
    let ours = run_case(case);
    check_logs_within(case, &ours, 2e-2, 2e-2);
    check_files_except(case, &ours, &[]);
    let fp32 = run_lmf_train_with("lfparity-fp32", case, &["bf16=false"]);
    let losses = |d: &std::path::Path| -> Vec<f64> {
        read_jsonl(&d.join("trainer_log.jsonl"))
            .iter()
            .filter_map(|l| l["loss"].as_f64())
            .collect()
    };
    let (bf16, f32) = (losses(&ours), losses(&fp32));
    assert_eq!(bf16.len(), f32.len());
    assert!(
        bf16.iter().zip(&f32).any(|(a, b)| rel(*a, *b) > 1e-6),
        "bf16 products changed nothing: {bf16:?}"
    );
    let _ = std::fs::remove_dir_all(&ours);
    let _ = std::fs::remove_dir_all(&fp32);
}

#[test]
fn lora_qwen_packed_matches_llamafactory() {
    check_case("lora_qwen");
}

/// LoRA on `embed_tokens` and `lm_head` (PEFT's lora.Embedding / lora.Linear) resumed from a
/// non-zero adapter: sft on the untied llama with evaluation.
#[test]
fn lora_embed_llama_matches_llamafactory() {
    check_case("lora_embed_llama");
}

/// The same on the tied qwen2 (both adapters on the one shared weight), pt with the pad token
/// among the inputs (no gradient to its column of lora_embedding_A) and LoRA+ (lora_embedding_B
/// at `loraplus_lr_embedding`).
#[test]
fn lora_embed_qwen_pt_matches_llamafactory() {
    check_case("lora_embed_qwen_pt");
}

/// `streaming: true`: the training stream shuffled through a buffer and drawn anew each epoch
/// (HF datasets' order), batches of 3 with 3 accumulation steps, so each epoch ends with one
/// batch whose gradient goes into the next epoch's first step (its logged loss is two steps'
/// worth, as in LF); the eval set is a shuffled stream too (20 rows in batches of 3: the short
/// last batch weighs like a full one in LF's sft evaluation).
#[test]
fn streaming_sft_matches_llamafactory() {
    check_case("stream_llama");
}

/// `streaming: true` with pt packing cut from the shuffled stream and `val_size: 4` (the first
/// four rows of epoch 0's order evaluate, the rest of each epoch's order trains). Its eval loss
/// also checks transformers 5.6's eval divisor: the summed token losses over the labels counted
/// before the shift (all 64 of a pt block, not the 63 that carry a loss).
#[test]
fn streaming_pt_with_val_size_matches_llamafactory() {
    check_case("stream_pt_val_qwen");
}

#[test]
fn full_llama_matches_llamafactory() {
    check_case("full_llama");
}

#[test]
fn freeze_llama_matches_llamafactory() {
    check_case("freeze_llama");
}

#[test]
fn pt_lora_llama_matches_llamafactory() {
    check_case("pt_lora_llama");
}

#[test]
fn eval_only_matches_llamafactory() {
    check_case("eval_llama");
}

/// Evaluation in batches of 3 over 20 rows: LF's sft evaluation weighs the short last batch like
/// a full one (its loss repeated `per_device_eval_batch_size` times, not cut to its 2 rows).
#[test]
fn eval_with_a_short_last_batch_matches_llamafactory() {
    check_case("eval_partial_llama");
}

/// `train_from_scratch`: transformers' `from_config` weights after `set_seed(1234)`, replayed
/// with torch's generator, then full fine-tuning.
/// Every loss within 1e-5 relative: a random model's loss is near ln(vocab) whatever its
/// weights, so the usual 1e-3 would not tell another init from transformers'.
#[test]
fn train_from_scratch_matches_llamafactory() {
    let case = "scratch_llama";
    let ours = run_case(case);
    let losses = |p: &std::path::Path| -> Vec<f64> {
        read_jsonl(&p.join("trainer_log.jsonl"))
            .iter()
            .filter_map(|l| l.get("loss").or(l.get("eval_loss")).and_then(Value::as_f64))
            .collect()
    };
    let (lf, us) = (losses(&case_dir(case)), losses(&ours));
    assert_eq!(lf.len(), us.len());
    for (i, (a, b)) in lf.iter().zip(&us).enumerate() {
        assert!(rel(*a, *b) <= 1e-5, "{case} record {i}: LF {a} lmf {b}");
    }
    // with another seed the weights, and so the losses, differ beyond that
    let other = run_lmf_train_with("lfparity-seed", case, &["seed=1235"]);
    let moved = losses(&other)
        .iter()
        .zip(&lf)
        .map(|(a, b)| rel(*b, *a))
        .fold(0.0, f64::max);
    assert!(
        moved > 1e-4,
        "seed 1235 gave LF's seed-1234 losses ({moved})"
    );
    let _ = std::fs::remove_dir_all(&other);
    check_case(case);
}

#[test]
fn predict_matches_llamafactory() {
    check_case("predict_llama");
}

/// QLoRA: LoRA on a base quantized on the fly by bitsandbytes (4-bit NF4 with double
/// quantization; 8-bit LLM.int8), LF 0.9.5 with bitsandbytes 0.50.2 on the CPU.
#[test]
fn qlora_4bit_nf4_llama_matches_llamafactory() {
    check_case("qlora4_llama");
}

#[test]
fn qlora_8bit_llama_matches_llamafactory() {
    check_case("qlora8_llama");
}

/// 4-bit FP4 without double quantization, on Qwen2 (bf16 weights on disk, q/k/v biases, tied
/// embedding) with packing.
#[test]
fn qlora_4bit_fp4_qwen_matches_llamafactory() {
    check_case("qlora4_fp4_qwen");
}

/// The same QLoRA run on the model as bitsandbytes saved it quantized (`save_pretrained` of the
/// 4-bit NF4 double-quantized llama, `tests/fixtures/hf/quant/prequant/`): lmf reads the saved
/// codes and gets LF's on-the-fly trajectory (the saved bytes are the ones LF quantized to).
#[test]
fn qlora_on_a_saved_bnb_4bit_checkpoint_matches_llamafactory() {
    let case = "qlora4_llama";
    let out = std::env::temp_dir().join(format!("lmf-lfparity-{}-prequant", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    common::run_lmf_in_fixture(
        case,
        &[
            "train".into(),
            format!("cases/{case}/{case}.yaml"),
            format!("output_dir={}", out.display()),
            "model_name_or_path=../quant/prequant/llama_nf4_dq".into(),
        ],
    );
    check_logs(case, &out);
    check_results(case, &out);
    let _ = std::fs::remove_dir_all(&out);
}

/// LLaMA Pro: the 2-layer llama expanded by LF's `scripts/llama_pro.py` to 4 layers (`lmf
/// llama-pro` writes the same folder: `tests/llama_pro.rs`), trained with `use_llama_pro`:
/// freeze tuning of the inserted blocks 1 and 3, and LoRA resumed on them.
#[test]
fn llama_pro_freeze_matches_llamafactory() {
    check_case("llama_pro/llama_pro_freeze");
}

#[test]
fn llama_pro_lora_matches_llamafactory() {
    check_case("llama_pro/llama_pro_lora");
}

/// `label_smoothing_factor`: transformers' `LabelSmoother` on each micro-batch (its mean over
/// the micro-batch's label tokens, summed over accumulation steps as transformers 5 does:
/// the logged loss is about twice the per-token loss with 2 accumulation steps), eval loss
/// smoothed too.
#[test]
fn label_smoothing_matches_llamafactory() {
    check_case("label_smoothing_llama");
}

/// `neftune_noise_alpha` touches training forwards only: an eval-only run gives LF's eval
/// loss exactly, and a training run starts from LF's step-1 loss moved by the noise (a few
/// percent at α = 5 on the tiny model), not by anything else.
#[test]
fn neftune_noise_is_only_in_training_forwards() {
    let ours =
        common::run_lmf_train_with("lfparity-neftune", "eval_llama", &["neftune_noise_alpha=5"]);
    check_results("eval_llama", &ours);
    let _ = std::fs::remove_dir_all(&ours);
    let ours = common::run_lmf_train_with(
        "lfparity-neftune",
        "lora_llama",
        &["neftune_noise_alpha=5", "max_steps=2"],
    );
    let first = |p: &std::path::Path| {
        common::read_jsonl(p)
            .iter()
            .find_map(|l| l.get("loss").and_then(|v| v.as_f64()))
            .unwrap()
    };
    let (lf, us) = (
        first(&case_dir("lora_llama").join("trainer_log.jsonl")),
        first(&ours.join("trainer_log.jsonl")),
    );
    let r = common::rel(lf, us);
    assert!(r > 1e-5 && r < 0.05, "step-1 loss LF {lf} lmf {us} ({r})");
    let _ = std::fs::remove_dir_all(&ours);
}

/// `lr_scheduler_type: reduce_lr_on_plateau` (torch's `ReduceLROnPlateau` stepped with
/// `eval_loss` after each evaluation: two halvings in this run, every logged lr checked) and
/// the best-metric bookkeeping it turns on (`metric_for_best_model` defaults to `loss`):
/// `best_metric`, `best_global_step` and the best checkpoint in `trainer_state.json`.
#[test]
fn reduce_lr_on_plateau_matches_llamafactory() {
    let case = "plateau_llama";
    let ours = run_case(case);
    check_logs(case, &ours);
    check_results(case, &ours);
    let lf = common::read_json(&case_dir(case).join("trainer_state.json"));
    let us = common::read_json(&ours.join("trainer_state.json"));
    assert_eq!(lf["best_global_step"], us["best_global_step"]);
    let (a, b) = (
        lf["best_metric"].as_f64().unwrap(),
        us["best_metric"].as_f64().unwrap(),
    );
    assert!(common::rel(a, b) < 1e-4, "best_metric LF {a} lmf {b}");
    let best = us["best_model_checkpoint"].as_str().unwrap();
    assert!(best.ends_with("checkpoint-20"), "{best}");
    // a resume from checkpoint-10 keeps the plateau state: the same lrs and losses after it
    let resumed = common::run_lmf_train_with(
        "lfparity-plateau-resume",
        case,
        &[&format!(
            "resume_from_checkpoint={}",
            ours.join("checkpoint-10").display()
        )],
    );
    let lines = |p: &std::path::Path| -> Vec<(u64, f64, f64)> {
        common::read_jsonl(&p.join("trainer_log.jsonl"))
            .iter()
            .filter(|l| l.get("loss").is_some())
            .map(|l| {
                (
                    l["current_steps"].as_u64().unwrap(),
                    l["loss"].as_f64().unwrap(),
                    l["lr"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    let full: Vec<_> = lines(&ours).into_iter().filter(|l| l.0 > 10).collect();
    assert_eq!(full, lines(&resumed));
    let _ = std::fs::remove_dir_all(&ours);
    let _ = std::fs::remove_dir_all(&resumed);
}

/// The checkpoint folders LF left in `output_dir` (from `output_files.json`), and lmf's.
fn checkpoint_dirs(case: &str, ours: &std::path::Path) -> (Vec<String>, Vec<String>) {
    let mut lf: Vec<String> = common::read_json(&case_dir(case).join("output_files.json"))
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| {
            v.as_str()
                .unwrap()
                .split_once('/')
                .map(|(d, _)| d.to_string())
        })
        .collect();
    lf.dedup();
    lf.sort();
    let mut us: Vec<String> = std::fs::read_dir(ours)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("checkpoint-"))
        .collect();
    us.sort();
    (lf, us)
}

/// `load_best_model_at_end` (checkpoints and evaluations every 4 steps, `save_total_limit: 1`)
/// and `save_strategy: best` (a checkpoint at each new best `eval_loss`): the same logs, best
/// metric, best step and best checkpoint as LF, and the same checkpoint folders left behind.
#[test]
fn best_checkpoint_strategies_match_llamafactory() {
    for case in ["load_best_llama", "save_best_llama"] {
        let ours = run_case(case);
        check_logs(case, &ours);
        check_results(case, &ours);
        let lf = common::read_json(&case_dir(case).join("trainer_state.json"));
        let us = common::read_json(&ours.join("trainer_state.json"));
        assert_eq!(lf["best_global_step"], us["best_global_step"], "{case}");
        let (a, b) = (
            lf["best_metric"].as_f64().unwrap(),
            us["best_metric"].as_f64().unwrap(),
        );
        assert!(
            common::rel(a, b) < 1e-4,
            "{case}: best_metric LF {a} lmf {b}"
        );
        let name = |v: &serde_json::Value| {
            v["best_model_checkpoint"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string()
        };
        assert_eq!(name(&lf), name(&us), "{case}");
        let (lf_dirs, our_dirs) = checkpoint_dirs(case, &ours);
        assert_eq!(lf_dirs, our_dirs, "{case}");
        let _ = std::fs::remove_dir_all(&ours);
    }
}

/// `load_best_model_at_end` when the best is not the last checkpoint (`greater_is_better`
/// turned around on `eval_loss`, so the first evaluation wins): the saved model is that
/// checkpoint's, and rotation keeps it beside the most recent one.
#[test]
fn load_best_model_at_end_restores_the_best_checkpoint() {
    let ours = common::run_lmf_train_with(
        "lfparity-loadbest",
        "load_best_llama",
        &["greater_is_better=true", "save_total_limit=2"],
    );
    let state = common::read_json(&ours.join("trainer_state.json"));
    assert_eq!(state["best_global_step"].as_u64(), Some(4));
    let (_, dirs) = checkpoint_dirs("load_best_llama", &ours);
    assert_eq!(dirs, ["checkpoint-20", "checkpoint-4"]);
    let read = |p: std::path::PathBuf| std::fs::read(p).unwrap();
    assert_eq!(
        read(ours.join("adapter_model.safetensors")),
        read(ours.join("checkpoint-4/adapter_model.safetensors"))
    );
    assert_ne!(
        read(ours.join("adapter_model.safetensors")),
        read(ours.join("checkpoint-20/adapter_model.safetensors"))
    );
    let _ = std::fs::remove_dir_all(&ours);
}

/// Mixture of experts: LoRA on Qwen3-MoE (the attention and the dense layer's MLP, which is
/// what `lora_target: all` finds) resumed from a non-zero adapter, with `moe_aux_loss_coef`
/// (the load-balancing loss in every logged and evaluated loss), and evaluation.
///
/// The base folders (`tests/fixtures/hf/models`) have no chat template: LF and lmf both save
/// the one the template makes as `chat_template.jinja`.
#[test]
fn moe_lora_qwen3_matches_llamafactory() {
    check_case("moe_lora_qwen3");
}

/// Full fine-tuning of Mixtral: the experts (grouped GEMM backward) and the routers train,
/// with the load-balancing loss under gradient accumulation.
#[test]
fn moe_full_mixtral_matches_llamafactory() {
    check_case("moe_full_mixtral");
}

/// GPT-OSS (sinks, YaRN, biased router and experts, clamped GLU): LoRA on the attention
/// linears resumed from a non-zero adapter, with evaluation; the `gpt_oss` template. LF runs
/// with eager attention in place of its GPU-only flash-attn3 kernel (see `make_train.py`).
#[test]
fn moe_lora_gpt_oss_matches_llamafactory() {
    check_case("moe_lora_gpt_oss");
}

/// GPT-OSS full fine-tuning: the attention sinks, the biased router, the stacked experts and
/// their biases train (grouped GEMM and sink gradients), under LF's default gradient
/// checkpointing; eager attention in LF as above.
#[test]
fn moe_full_gpt_oss_matches_llamafactory() {
    check_case("moe_full_gpt_oss");
}
