//! The streaming shuffle order against HF `datasets` 4.0.0 itself (fixture:
//! `tests/fixtures/hf/data/make_stream_order.py` → `stream_order.json`): numpy's draws, whole
//! passes per epoch, the take/skip validation split, a batched map, the DataLoader path, and
//! concatenated sources.

use lmf_trainers::data::numpy_rng::NumpyRng;
use lmf_trainers::data::stream::{concat_order, shuffled_order, split_orders};
use serde_json::Value;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/hf/data");

fn fixture() -> Value {
    let text = std::fs::read_to_string(format!("{DIR}/stream_order.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap()
}

fn list(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| u(x) as usize)
        .collect()
}

fn cases<'a>(f: &'a Value, key: &str) -> &'a Vec<Value> {
    let c = f[key].as_array().unwrap();
    assert!(!c.is_empty(), "{key}: no cases");
    c
}

#[test]
fn numpy_draws_match() {
    let f = fixture();
    for c in cases(&f, "numpy") {
        let mut rng = NumpyRng::new(u(&c["seed"]));
        let got: Vec<u64> = match c["op"].as_str().unwrap() {
            "integers" => {
                // `high` may be 2^63, one past i64::MAX: draw over the closed 0..=high-1
                let high = (u(&c["high"]) - 1) as i64;
                let size = u(&c["size"]) as usize;
                let v = rng.integers_closed(0, high, size);
                v.into_iter().map(|v| v as u64).collect()
            }
            "scalar_1_63" => (0..3)
                .map(|_| rng.integers_closed(0, i64::MAX, 1)[0] as u64)
                .collect(),
            "mixed" => {
                let mut out: Vec<u64> = rng
                    .integers(0, 37, 7)
                    .into_iter()
                    .map(|v| v as u64)
                    .collect();
                let mut b: Vec<u64> = (0..10).collect();
                rng.shuffle(&mut b);
                out.extend(b);
                out.extend(rng.integers(0, 1 << 40, 3).into_iter().map(|v| v as u64));
                out.extend(rng.integers(0, 5, 3).into_iter().map(|v| v as u64));
                let mut e: Vec<u64> = (0..6).collect();
                rng.shuffle(&mut e);
                out.extend(e);
                out
            }
            op => panic!("unknown op {op}"),
        };
        let want: Vec<u64> = c["values"].as_array().unwrap().iter().map(u).collect();
        assert_eq!(got, want, "{c}");
    }
}

#[test]
fn every_pass_matches_datasets() {
    let f = fixture();
    for key in ["orders", "mapped"] {
        for c in cases(&f, key) {
            let (n, b) = (u(&c["n"]) as usize, u(&c["buffer_size"]) as usize);
            let got = shuffled_order(n, b, u(&c["seed"]), u(&c["epoch"]));
            assert_eq!(
                got,
                list(&c["order"]),
                "{key} n={n} B={b} seed={} epoch={}",
                c["seed"],
                c["epoch"]
            );
        }
    }
}

#[test]
fn take_skip_split_matches_datasets() {
    let f = fixture();
    for c in cases(&f, "splits") {
        let (n, b) = (u(&c["n"]) as usize, u(&c["buffer_size"]) as usize);
        let val = u(&c["val"]) as usize;
        let (eval, train) = split_orders(n, b, u(&c["seed"]), val, u(&c["epoch"]));
        let what = format!(
            "n={n} B={b} seed={} val={val} epoch={}",
            c["seed"], c["epoch"]
        );
        assert_eq!(eval, list(&c["eval"]), "eval {what}");
        assert_eq!(train, list(&c["train"]), "train {what}");
    }
}

/// Through accelerate's DataLoader: train at epoch e, eval at epoch 0 every time.
#[test]
fn dataloader_sees_train_epochs_and_eval_epoch_zero() {
    let f = fixture();
    for c in cases(&f, "dataloader") {
        let (n, b, seed) = (
            u(&c["n"]) as usize,
            u(&c["buffer_size"]) as usize,
            u(&c["seed"]),
        );
        let val = u(&c["val"]) as usize;
        let (eval0, _) = split_orders(n, b, seed, val, 0);
        for (epoch, (train, eval)) in c["train"]
            .as_array()
            .unwrap()
            .iter()
            .zip(c["eval"].as_array().unwrap())
            .enumerate()
        {
            assert_eq!(split_orders(n, b, seed, val, epoch as u64).1, list(train));
            assert_eq!(eval0, list(eval), "eval pass {epoch}");
        }
    }
}

/// Several sources concatenated (`mix_strategy: concat`): the source order is drawn per epoch,
/// then the buffer shuffles the concatenation.
#[test]
fn concatenated_sources_match_datasets() {
    let f = fixture();
    for c in cases(&f, "concat") {
        let lengths = list(&c["lengths"]);
        let (b, seed, epoch) = (u(&c["buffer_size"]) as usize, u(&c["seed"]), u(&c["epoch"]));
        assert_eq!(
            concat_order(&lengths, b, seed, epoch),
            list(&c["order"]),
            "lengths={lengths:?} B={b} seed={seed} epoch={epoch}"
        );
    }
}
