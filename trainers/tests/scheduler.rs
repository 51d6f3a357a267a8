//! Learning-rate schedules against transformers 5.6 (`tests/fixtures/hf/sched/schedules.json`,
//! written by `make_sched.py`): every case, every step, plus `get_warmup_steps` and name errors.

use lmf_trainers::optim::{get_warmup_steps, Scheduler, SchedulerError, SchedulerType};
use serde_json::{Map, Value};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/hf/sched/schedules.json"
);

fn fixture() -> Value {
    let text = std::fs::read_to_string(FIXTURE).expect("read schedules.json");
    serde_json::from_str(&text).expect("parse schedules.json")
}

fn close(ours: f64, theirs: f64) -> bool {
    (ours - theirs).abs() <= 1e-15 || (ours - theirs).abs() <= 1e-12 * theirs.abs()
}

#[test]
fn every_schedule_matches_transformers() {
    let fx = fixture();
    let base_lr = fx["base_lr"].as_f64().unwrap();
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 20, "fixture has {} cases", cases.len());
    let mut seen = std::collections::HashSet::new();
    for case in cases {
        let label = case["label"].as_str().unwrap();
        let ty = SchedulerType::parse(case["type"].as_str().unwrap()).unwrap();
        seen.insert(ty);
        let warmup = case["num_warmup_steps"].as_u64().unwrap();
        let total = case["num_training_steps"].as_u64().unwrap();
        let kwargs = case["kwargs"].as_object().unwrap();
        let lrs: Vec<f64> = case["lrs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert!(
            lrs.len() as u64 > total,
            "{label}: fixture covers every step"
        );
        let mut sched = Scheduler::new(ty, base_lr, warmup, total, kwargs)
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        for (step, &theirs) in lrs.iter().enumerate() {
            let ours = sched.lr_at(step as u64);
            assert!(
                close(ours, theirs),
                "{label} step {step}: ours {ours:e} transformers {theirs:e}"
            );
            // The stateful path (LambdaLR's last_epoch) gives the same lr.
            assert_eq!(sched.last_epoch(), step as u64);
            assert_eq!(sched.lr(), ours);
            sched.step();
        }
    }
    // reduce_lr_on_plateau is stepped with metrics, not steps: `plateau_matches_torch`
    assert_eq!(
        seen.len(),
        SchedulerType::ALL.len() - 1,
        "every type has a fixture case"
    );
}

/// `reduce_lr_on_plateau` against torch's `ReduceLROnPlateau` fed the same metrics (min / max
/// mode, rel / abs threshold, patience, cooldown, min_lr).
#[test]
fn plateau_matches_torch() {
    let fx = fixture();
    let base_lr = fx["base_lr"].as_f64().unwrap();
    let cases = fx["plateau"].as_array().unwrap();
    assert!(cases.len() >= 4);
    let mut reductions = 0;
    for case in cases {
        let label = case["label"].as_str().unwrap();
        let kwargs = case["kwargs"].as_object().unwrap();
        let mut sched =
            Scheduler::new(SchedulerType::ReduceLrOnPlateau, base_lr, 0, 100, kwargs).unwrap();
        let mut last = base_lr;
        for (i, (m, theirs)) in case["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .zip(case["lrs"].as_array().unwrap())
            .enumerate()
        {
            sched.plateau_mut().unwrap().step(m.as_f64().unwrap());
            let (ours, theirs) = (sched.lr(), theirs.as_f64().unwrap());
            assert!(
                close(ours, theirs),
                "{label} eval {i}: ours {ours:e} torch {theirs:e}"
            );
            reductions += (ours < last) as usize;
            last = ours;
        }
    }
    assert!(
        reductions >= 4,
        "the cases reduce the lr {reductions} times"
    );
}

#[test]
fn resume_from_last_epoch() {
    let fx = fixture();
    let base_lr = fx["base_lr"].as_f64().unwrap();
    let case = &fx["cases"][3]; // cosine_100_w10
    assert_eq!(case["label"], "cosine_100_w10");
    let lrs = case["lrs"].as_array().unwrap();
    let mut sched = Scheduler::from_name("cosine", base_lr, 10, 100, &Map::new()).unwrap();
    sched.set_last_epoch(42);
    assert!(close(sched.lr(), lrs[42].as_f64().unwrap()));
    assert!(close(sched.step(), lrs[43].as_f64().unwrap()));
}

#[test]
fn warmup_steps_rule_matches_training_arguments() {
    let fx = fixture();
    let rows = fx["warmup"].as_array().unwrap();
    assert!(!rows.is_empty());
    for row in rows {
        let ws = row["warmup_steps"].as_f64().unwrap();
        let ratio = row["warmup_ratio"].as_f64();
        let total = row["num_training_steps"].as_u64().unwrap();
        let expected = row["expected"].as_u64().unwrap();
        assert_eq!(get_warmup_steps(ws, ratio, total), expected, "{row}");
    }
}

#[test]
fn names_round_trip_and_unknown_lists_them() {
    for (ty, name) in SchedulerType::ALL.iter().zip(SchedulerType::NAMES) {
        assert_eq!(SchedulerType::parse(name).unwrap(), *ty);
        assert_eq!(ty.name(), name);
        assert_eq!(name.parse::<SchedulerType>().unwrap(), *ty);
    }
    let err = SchedulerType::parse("cosine_annealing").unwrap_err();
    assert_eq!(err, SchedulerError::UnknownType("cosine_annealing".into()));
    let msg = err.to_string();
    assert!(msg.contains("cosine_annealing"), "{msg}");
    for name in SchedulerType::NAMES {
        assert!(msg.contains(name), "{msg} lacks {name}");
    }
    assert!(Scheduler::from_name("nope", 1e-3, 0, 10, &Map::new()).is_err());
}

#[test]
fn bad_kwargs_are_errors() {
    let kw = |v: Value| v.as_object().unwrap().clone();
    let e = Scheduler::from_name(
        "cosine",
        1e-3,
        0,
        10,
        &kw(serde_json::json!({"power": 2.0})),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("power") && e.to_string().contains("num_cycles"),
        "{e}"
    );
    assert!(Scheduler::from_name("cosine_with_min_lr", 1e-3, 0, 10, &Map::new()).is_err());
    let both = kw(serde_json::json!({"min_lr": 1e-5, "min_lr_rate": 0.1}));
    assert!(Scheduler::from_name("cosine_with_min_lr", 1e-3, 0, 10, &both).is_err());
    assert!(Scheduler::from_name("warmup_stable_decay", 1e-3, 0, 10, &Map::new()).is_err());
    let bad_curve = kw(serde_json::json!({"num_decay_steps": 3, "decay_type": "exp"}));
    assert!(Scheduler::from_name("warmup_stable_decay", 1e-3, 0, 10, &bad_curve).is_err());
    let big_end = kw(serde_json::json!({"lr_end": 1e-2}));
    assert!(Scheduler::from_name("polynomial", 1e-3, 0, 10, &big_end).is_err());
    // transformers ignores kwargs for the constant schedules.
    assert!(
        Scheduler::from_name("constant", 1e-3, 0, 10, &kw(serde_json::json!({"x": 1}))).is_ok()
    );
}
