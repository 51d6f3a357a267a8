//! `get_dataset` / `get_stage_dataset` against LLaMA-Factory 0.9.5's own `get_dataset` on the
//! same files, tokenizers and arguments (fixture: `tests/fixtures/hf/data/make_encoded.py` →
//! `encoded.json`): input ids, labels, position ids and attention segments of every case are
//! identical; for rm / dpo the chosen and rejected rows, for kto the rows, their KL rows and
//! tags; LF's refusals are refusals here. The Llama 3 tool
//! prompt's "Today Date" is the fixture's `tool_date` (the date LF was pinned to), never today's.

use std::path::{Path, PathBuf};

use lmf_models::Tokenizer;
use lmf_trainers::args::data::MixStrategy;
use lmf_trainers::args::finetuning::Stage;
use lmf_trainers::args::DataArguments;
use lmf_trainers::data::{
    get_dataset, get_stage_dataset, DataOptions, Example, KtoExample, PairExample, StageDataset,
};
use lmf_trainers::template::{Template, TemplateOptions};
use serde_json::Value;

const HF: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/hf");

fn fixture() -> Value {
    let text = std::fs::read_to_string(format!("{HF}/data/encoded.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn names(v: &Value) -> Option<Vec<String>> {
    v.as_str()
        .map(|s| s.split(',').map(|n| n.trim().to_string()).collect())
}

/// The case's arguments as our DataArguments (after post_init) + options + stage.
fn setup(case: &Value) -> (DataArguments, DataOptions, Stage) {
    let a = &case["args"];
    let mut d = DataArguments {
        template: a["template"].as_str().map(str::to_string),
        dataset: names(&a["dataset"]),
        eval_dataset: names(&a["eval_dataset"]),
        dataset_dir: format!("{HF}/data/sets"),
        cutoff_len: a["cutoff_len"].as_i64().unwrap(),
        train_on_prompt: a["train_on_prompt"].as_bool().unwrap_or(false),
        mask_history: a["mask_history"].as_bool().unwrap_or(false),
        packing: a["packing"].as_bool(),
        neat_packing: a["neat_packing"].as_bool().unwrap_or(false),
        max_samples: a["max_samples"].as_i64(),
        enable_thinking: a.get("enable_thinking").map_or(Some(true), |v| v.as_bool()),
        val_size: a["val_size"].as_f64().unwrap_or(0.0),
        preprocessing_batch_size: a["preprocessing_batch_size"].as_i64().unwrap_or(1000),
        eval_on_each_dataset: a["eval_on_each_dataset"].as_bool().unwrap_or(false),
        interleave_probs: a["interleave_probs"].as_str().map(|p| {
            p.split(',')
                .map(|x| x.trim().parse::<f64>().unwrap())
                .collect()
        }),
        ..DataArguments::default()
    };
    d.mix_strategy = match a["mix_strategy"].as_str() {
        None | Some("concat") => MixStrategy::Concat,
        Some("interleave_under") => MixStrategy::InterleaveUnder,
        Some("interleave_over") => MixStrategy::InterleaveOver,
        Some(other) => panic!("unexpected mix_strategy {other}"),
    };
    d.post_init().unwrap();
    let stage = match a["stage"].as_str() {
        None | Some("sft") => Stage::Sft,
        Some("pt") => Stage::Pt,
        Some("rm") => Stage::Rm,
        Some("dpo") => Stage::Dpo,
        Some("kto") => Stage::Kto,
        Some(other) => panic!("unexpected stage {other}"),
    };
    let opts = DataOptions {
        do_train: a["do_train"].as_bool().unwrap_or(true),
        do_eval: a["do_eval"].as_bool().unwrap_or(false),
        do_predict: a["do_predict"].as_bool().unwrap_or(false),
        predict_with_generate: a["predict_with_generate"].as_bool().unwrap_or(false),
        seed: a["seed"].as_u64().unwrap_or(42),
        // transformers 5.6 ignores tokenizer_config's add_bos_token (case llama3_pt_bos_*)
        add_bos_token: false,
    };
    (d, opts, stage)
}

fn model_dir(case: &Value) -> PathBuf {
    Path::new(HF).join(case["model"].as_str().unwrap())
}

fn ids<T: serde::de::DeserializeOwned>(v: &Value) -> Vec<T> {
    serde_json::from_value(v.clone()).unwrap()
}

/// LF's attention mask of a neat-packed row (1, 2, ... per sub-sequence, 0 = pad) as segments.
fn segments_of(mask: &[i64]) -> Vec<usize> {
    let mut out: Vec<usize> = Vec::new();
    let mut prev = None;
    for &m in mask {
        if Some(m) == prev {
            *out.last_mut().unwrap() += 1;
        } else {
            out.push(1);
            prev = Some(m);
        }
    }
    out
}

fn check_rows(name: &str, set: &str, ours: &[Example], want: &[Value], pt: bool, neat: bool) {
    assert_eq!(ours.len(), want.len(), "{name} {set}: number of rows");
    for (i, (o, w)) in ours.iter().zip(want).enumerate() {
        let at = format!("{name} {set} row {i}");
        assert_eq!(o.input_ids, ids::<u32>(&w["input_ids"]), "{at}: input_ids");
        let labels = if pt {
            &w["collated_labels"]
        } else {
            &w["labels"]
        };
        assert_eq!(o.labels, ids::<i64>(labels), "{at}: labels");
        assert_eq!(
            o.segments.iter().sum::<usize>(),
            o.len(),
            "{at}: segments cover the row"
        );
        assert_eq!(
            o.position_ids.len(),
            o.len(),
            "{at}: one position per token"
        );
        match w.get("position_ids") {
            Some(p) => {
                // packed: positions restart per sub-sequence (LF's own)
                assert_eq!(o.position_ids, ids::<u32>(p), "{at}: position_ids");
                let mask = ids::<i64>(&w["attention_mask"]);
                if neat {
                    assert_eq!(o.segments, segments_of(&mask), "{at}: neat segments");
                } else {
                    // plain packing: all-ones mask, attention crosses sub-sequences
                    assert!(mask.iter().all(|&m| m == 1), "{at}: plain mask");
                    assert_eq!(
                        o.segments,
                        vec![o.len()],
                        "{at}: plain packing = one segment"
                    );
                }
            }
            None => {
                // unpacked: LF's collator gives positions 0..len, one causal sequence
                assert_eq!(o.segments, vec![o.len()], "{at}: one segment");
                let want: Vec<u32> = (0..o.len() as u32).collect();
                assert_eq!(o.position_ids, want, "{at}: positions");
            }
        }
    }
}

/// An unpacked row against LF's `{prefix}input_ids`, `{prefix}labels`,
/// `{prefix}attention_mask` (all ones: no padding before the collator).
fn check_unpacked(at: &str, o: &Example, w: &Value, prefix: &str) {
    let key = |k: &str| format!("{prefix}{k}");
    assert_eq!(
        o.input_ids,
        ids::<u32>(&w[key("input_ids")]),
        "{at}: {prefix}input_ids"
    );
    assert_eq!(
        o.labels,
        ids::<i64>(&w[key("labels")]),
        "{at}: {prefix}labels"
    );
    let mask = ids::<i64>(&w[key("attention_mask")]);
    assert_eq!(mask, vec![1; o.len()], "{at}: {prefix}attention_mask");
    assert_eq!(o.segments, vec![o.len()], "{at}: {prefix} one segment");
    let want: Vec<u32> = (0..o.len() as u32).collect();
    assert_eq!(o.position_ids, want, "{at}: {prefix} positions");
}

fn check_pairs(name: &str, set: &str, ours: &[PairExample], want: &[Value]) {
    assert_eq!(ours.len(), want.len(), "{name} {set}: number of rows");
    for (i, (o, w)) in ours.iter().zip(want).enumerate() {
        let at = format!("{name} {set} row {i}");
        check_unpacked(&at, &o.chosen, w, "chosen_");
        check_unpacked(&at, &o.rejected, w, "rejected_");
    }
}

fn check_kto(name: &str, set: &str, ours: &[KtoExample], want: &[Value]) {
    assert_eq!(ours.len(), want.len(), "{name} {set}: number of rows");
    for (i, (o, w)) in ours.iter().zip(want).enumerate() {
        let at = format!("{name} {set} row {i}");
        check_unpacked(&at, &o.example, w, "");
        check_unpacked(&at, &o.kl, w, "kl_");
        assert_eq!(Some(o.desirable), w["kto_tags"].as_bool(), "{at}: kto_tags");
    }
}

/// Every set of a case: `check(set name, our rows, LF's rows)`.
fn for_each_set<R>(
    name: &str,
    case: &Value,
    train: &[R],
    eval: &[(String, Vec<R>)],
    mut check: impl FnMut(&str, &[R], &[Value]),
) {
    let empty = vec![];
    check("train", train, case["train"].as_array().unwrap_or(&empty));
    let want_eval = case["eval"].as_object();
    assert_eq!(
        eval.len(),
        want_eval.map_or(0, |m| m.len()),
        "{name}: eval sets"
    );
    for (set, rows) in eval {
        let w = want_eval.unwrap()[set.as_str()].as_array().unwrap();
        check(&format!("eval `{set}`"), rows, w);
    }
}

#[test]
fn every_case_matches_llamafactory() {
    let fx = fixture();
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 25);
    let tool_date = fx["tool_date"]
        .as_str()
        .expect("fixture records its tool_date");
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (data_args, opts, stage) = setup(case);
        let mut tok = Tokenizer::from_dir(&model_dir(case)).unwrap();
        let t_opts = TemplateOptions {
            enable_thinking: data_args.enable_thinking,
            ..TemplateOptions::default()
        };
        let mut template =
            Template::for_tokenizer(data_args.template.as_deref(), &mut tok, &t_opts).unwrap();
        template.set_tool_date(Some(tool_date.to_string()));
        let got = get_stage_dataset(&template, &tok, &data_args, stage, &opts);
        if let Some(err) = case["error"].as_str() {
            let e = got.expect_err(name).to_string();
            assert!(e.contains(err), "{name}: {e} should say {err}");
            continue;
        }
        assert_eq!(
            data_args.cutoff_len,
            case["cutoff_len_after_post_init"].as_i64().unwrap(),
            "{name}: cutoff_len after post_init"
        );
        let module = match got.unwrap_or_else(|e| panic!("{name}: {e}")) {
            StageDataset::Plain(m) => m,
            StageDataset::Pairwise(m) => {
                assert!(matches!(stage, Stage::Rm | Stage::Dpo), "{name}");
                for_each_set(name, case, &m.train, &m.eval, |set, o, w| {
                    check_pairs(name, set, o, w)
                });
                continue;
            }
            StageDataset::Feedback(m) => {
                assert_eq!(stage, Stage::Kto, "{name}");
                for_each_set(name, case, &m.train, &m.eval, |set, o, w| {
                    check_kto(name, set, o, w)
                });
                continue;
            }
        };
        if name == "llama3_sharegpt" {
            // The case does render the date: another day gives other ids.
            template.set_tool_date(Some("01 Jan 2030".into()));
            let other = get_dataset(&template, &tok, &data_args, stage, &opts).unwrap();
            let differ = (other.train.iter().zip(&module.train))
                .filter(|(a, b)| a.input_ids != b.input_ids)
                .count();
            assert!(
                differ > 0,
                "{name}: the tool prompt's date should show in the ids"
            );
        }
        let pt = stage == Stage::Pt;
        let neat = data_args.neat_packing;
        for_each_set(name, case, &module.train, &module.eval, |set, o, w| {
            check_rows(name, set, o, w, pt, neat)
        });
    }
}

#[test]
fn fixture_shows_plain_packing_attends_across_sub_sequences() {
    // LF's plain-packing loss differs from the loss of each sub-sequence alone (attention
    // crosses), its neat-packing loss equals it: the reason for one segment vs many.
    let a = &fixture()["attention"];
    let plain = a["plain_loss"].as_f64().unwrap();
    let neat = a["neat_loss"].as_f64().unwrap();
    let isolated = a["isolated_loss"].as_f64().unwrap();
    assert!((plain - isolated).abs() / isolated > 1e-3, "{a}");
    assert!((neat - isolated).abs() / isolated < 1e-5, "{a}");
}

#[test]
fn numpy_draws_match_numpy() {
    use lmf_trainers::data::numpy_rng::{cdf, NumpyRng};
    let fx = fixture();
    for p in fx["numpy"]["permutations"].as_array().unwrap() {
        let (seed, n) = (
            p["seed"].as_u64().unwrap(),
            p["n"].as_u64().unwrap() as usize,
        );
        let ours = NumpyRng::new(seed).permutation(n);
        match p.get("permutation") {
            Some(w) => assert_eq!(ours, ids::<usize>(w), "seed {seed} n {n}"),
            None => assert_eq!(
                ours[..64],
                ids::<usize>(&p["head"])[..],
                "seed {seed} n {n}"
            ),
        }
    }
    for c in fx["numpy"]["choices"].as_array().unwrap() {
        let seed = c["seed"].as_u64().unwrap();
        let cdf = cdf(&ids::<f64>(&c["p"]));
        let mut rng = NumpyRng::new(seed);
        let ours: Vec<usize> = (0..200).map(|_| rng.choice(&cdf)).collect();
        assert_eq!(ours, ids::<usize>(&c["choice"]), "seed {seed}");
    }
}

#[test]
fn fixture_shows_kto_kl_rows_rotate_within_batches() {
    // The same rows in batches of 3 pair other KL responses than in one batch: row 0 takes
    // row 2's response instead of row 6's, row 3 row 5's instead of row 2's.
    let fx = fixture();
    let case = |n: &str| {
        fx["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == n)
            .unwrap()["train"]
            .clone()
    };
    let (one, three) = (
        case("llama3_kto_sharegpt"),
        case("llama3_kto_sharegpt_batch3"),
    );
    let same: Vec<bool> = (0..7)
        .map(|i| one[i]["kl_input_ids"] == three[i]["kl_input_ids"])
        .collect();
    assert_eq!(same, [false, true, true, false, true, true, false]);
}
