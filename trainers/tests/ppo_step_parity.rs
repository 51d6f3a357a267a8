//! lmf's PPO step against TRL 0.9.6's `PPOTrainer.step` as LLaMA-Factory 0.9.3 drives it:
//! `tests/fixtures/hf/ppo/step/{base,norm_whiten}` (written by
//! `tests/fixtures/hf/ppo/make_ppo_step.py`, see its README) hold two `step` calls on a tiny
//! Llama with full fine-tuning, their inputs, every stat, the per-token rollout numbers, numpy's
//! permutations and the weights after each step. Same model, value head, queries, responses
//! and scores here; the KL, losses, returns, advantages and new KL coefficient must agree
//! within 1e-4 and the updated weights within 1e-5.

use std::path::{Path, PathBuf};

use lmf_models::value_head::VALUE_HEAD_FILE;
use lmf_models::{CausalLM, ValueHead, Weights};
use lmf_runtime::{DType, Device};
use lmf_trainers::optim::{default_groups, AdamHyper, AdamW};
use lmf_trainers::train::ppo::math::KlController;
use lmf_trainers::train::ppo::step::{Experience, Ppo, PpoConfig, StepOutput};
use lmf_trainers::train::pref::reference::Reference;
use serde_json::Value;

const PPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/hf/ppo");

fn close(what: &str, got: f64, want: f64, tol: f64) {
    let err = (got - want).abs() / want.abs().max(1.0);
    assert!(
        err <= tol,
        "{what}: lmf {got} vs TRL {want} (rel err {err:.2e} > {tol:.0e})"
    );
}

/// The case's model with its initial value head, all of it trainable (full fine-tuning).
fn policy(case_dir: &Path) -> CausalLM {
    let model_dir = PathBuf::from(PPO).join("model");
    let mut model = CausalLM::load(&model_dir, DType::F32, Device::Cpu).unwrap();
    // one folder per case: the two tests run in parallel
    let case = case_dir.file_name().unwrap().to_string_lossy();
    let tmp = std::env::temp_dir().join(format!("lmf-ppo-step-{}-{case}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::copy(
        case_dir.join("value_head_init.safetensors"),
        tmp.join(VALUE_HEAD_FILE),
    )
    .unwrap();
    let hidden = model.config.hidden_size;
    model.value_head = ValueHead::load(&tmp, hidden, 0.0, Device::Cpu).unwrap();
    assert!(model.value_head.is_some());
    model.set_trainable(|_| true);
    model
}

fn ids(v: &Value) -> Vec<Vec<u32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect()
        })
        .collect()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// TRL's padded per-token array `rows` at its mask's 1 positions, row by row.
fn masked(rows: &Value, masks: &Value) -> Vec<Vec<f64>> {
    rows.as_array()
        .unwrap()
        .iter()
        .zip(masks.as_array().unwrap())
        .map(|(r, m)| {
            floats(r)
                .into_iter()
                .zip(floats(m))
                .filter(|(_, m)| *m > 0.5)
                .map(|(x, _)| x)
                .collect()
        })
        .collect()
}

fn check_step(name: &str, out: &StepOutput, want: &Value) {
    let stats = &want["stats"];
    for key in [
        "objective/kl",
        "objective/kl_coef",
        "objective/entropy",
        "ppo/mean_non_score_reward",
        "ppo/mean_scores",
        "ppo/std_scores",
        "ppo/loss/policy",
        "ppo/loss/value",
        "ppo/loss/total",
        "ppo/policy/approxkl",
        "ppo/policy/policykl",
        "ppo/policy/clipfrac",
        "ppo/policy/advantages_mean",
        "ppo/returns/mean",
        "ppo/returns/var",
        "ppo/val/vpred",
        "ppo/val/error",
        "ppo/val/clipfrac",
        "ppo/val/mean",
        "ppo/val/var",
        "ppo/val/var_explained",
        "ppo/learning_rate",
    ] {
        let w = stats[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{name}: no stat {key}"));
        let got = out
            .stat(key)
            .unwrap_or_else(|| panic!("{name}: lmf has no {key}"));
        close(&format!("{name} {key}"), got, w, 1e-4);
    }
    let r = &want["rollout"];
    let masks = &r["masks"];
    for (what, got, w) in [
        (
            "advantages",
            &out.advantages,
            masked(&r["advantages"], masks),
        ),
        ("returns", &out.returns, masked(&r["returns"], masks)),
    ] {
        assert_eq!(got.len(), w.len());
        for (i, (g, w)) in got.iter().zip(&w).enumerate() {
            assert_eq!(g.len(), w.len(), "{name} {what}[{i}] length");
            for (t, (a, b)) in g.iter().zip(w).enumerate() {
                close(&format!("{name} {what}[{i}][{t}]"), *a, *b, 1e-4);
            }
        }
    }
    let perms: Vec<Vec<usize>> = want["permutations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            p.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as usize)
                .collect()
        })
        .collect();
    assert_eq!(out.permutations, perms, "{name}: numpy's permutations");
}

fn check_weights(name: &str, model: &CausalLM, file: &Path) {
    let w = Weights::from_files(&[file.to_path_buf()]).unwrap();
    let params = model.named_parameters();
    let mut seen = 0;
    for n in w.names() {
        let want = w
            .get(n, DType::F32, Device::Cpu)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        let (_, var) = params
            .iter()
            .find(|(p, _)| p == n)
            .unwrap_or_else(|| panic!("{name}: lmf has no parameter {n}"));
        let got = var.tensor().to_vec::<f32>().unwrap();
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            worst <= 1e-5,
            "{name} {n}: max |lmf − TRL| = {worst:.2e} > 1e-5"
        );
        seen += 1;
    }
    assert_eq!(seen, params.len(), "{name}: every parameter is compared");
}

fn run_case(case: &str) {
    let dir = PathBuf::from(PPO).join("step").join(case);
    let fx: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("step.json")).unwrap()).unwrap();
    let pc = &fx["ppo_config"];
    let cfg = PpoConfig {
        batch_size: pc["batch_size"].as_u64().unwrap() as usize,
        mini_batch_size: pc["mini_batch_size"].as_u64().unwrap() as usize,
        gradient_accumulation_steps: pc["gradient_accumulation_steps"].as_u64().unwrap() as usize,
        ppo_epochs: pc["ppo_epochs"].as_u64().unwrap() as usize,
        gamma: pc["gamma"].as_f64().unwrap(),
        lam: pc["lam"].as_f64().unwrap(),
        cliprange: pc["cliprange"].as_f64().unwrap(),
        cliprange_value: pc["cliprange_value"].as_f64().unwrap(),
        vf_coef: pc["vf_coef"].as_f64().unwrap(),
        ratio_threshold: pc["ratio_threshold"].as_f64().unwrap(),
        max_grad_norm: pc["max_grad_norm"].as_f64().unwrap(),
        whiten_rewards: pc["whiten_rewards"].as_bool().unwrap(),
        score_norm: pc["use_score_norm"].as_bool().unwrap(),
    };
    let mut model = policy(&dir);
    let reference = {
        let mut r =
            CausalLM::load(&PathBuf::from(PPO).join("model"), DType::F32, Device::Cpu).unwrap();
        r.set_trainable(|_| false);
        Reference::Model(Box::new(r))
    };
    let g0 = &fx["optimizer"]["param_groups"][0];
    let betas = floats(&g0["betas"]);
    let hyper = AdamHyper {
        beta1: betas[0],
        beta2: betas[1],
        eps: g0["eps"].as_f64().unwrap(),
    };
    let trainable: Vec<String> = model
        .trainable_parameters()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let lr = pc["learning_rate"].as_f64().unwrap();
    let optimizer = AdamW::new(hyper, default_groups(&trainable, lr, 0.0));
    let kl = KlController {
        value: pc["init_kl_coef"].as_f64().unwrap(),
        target: Some(pc["target"].as_f64().unwrap()),
        horizon: pc["horizon"].as_f64().unwrap(),
    };
    let mut ppo = Ppo::new(cfg, kl, optimizer, pc["seed"].as_u64().unwrap()).unwrap();
    for (k, step) in fx["steps"].as_array().unwrap().iter().enumerate() {
        let name = format!("{case} step {}", k + 1);
        let exp = Experience {
            queries: ids(&step["queries"]),
            responses: ids(&step["responses"]),
            scores: floats(&step["scores"]),
        };
        close(
            &format!("{name} kl_coef before"),
            ppo.kl.value,
            step["kl_coef_before"].as_f64().unwrap(),
            1e-12,
        );
        let out = ppo.step(&mut model, &reference, &exp, 1.0).unwrap();
        check_step(&name, &out, step);
        close(
            &format!("{name} kl_coef after"),
            ppo.kl.value,
            step["kl_coef_after"].as_f64().unwrap(),
            1e-4,
        );
        let weights = dir.join(format!("weights_step{}.safetensors", k + 1));
        if weights.is_file() {
            check_weights(&name, &model, &weights);
        }
    }
}

#[test]
fn ppo_step_equals_trl_with_lf_defaults() {
    run_case("base");
}

#[test]
fn ppo_step_equals_trl_with_score_norm_and_whitened_rewards() {
    run_case("norm_whiten");
}
