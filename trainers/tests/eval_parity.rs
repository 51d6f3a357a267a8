//! `lmf eval` against LLaMA-Factory 0.9.3's `llamafactory-cli eval` on the small MMLU-format
//! task folder `tests/fixtures/hf/eval/tinymmlu` (`make_task.py`), from the runs recorded by
//! `tests/fixtures/hf/eval/make_eval.py` (see its README): every case's `results.json` and
//! `results.log` byte for byte, and along the way each question's few-shot draw (the replayed
//! unseeded `datasets` shuffle) and prompt ids.

use std::path::{Path, PathBuf};

use lmf_trainers::args::parse_eval_args;
use lmf_trainers::chat::load_for_inference;
use lmf_trainers::eval::task::TaskFolder;
use lmf_trainers::eval::{run_eval, EvalTemplate, SupportDraw};
use serde_json::Value;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const EVAL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/hf/eval");

fn cases() -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = std::fs::read_dir(format!("{EVAL}/expected"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            (p.file_stem().unwrap().to_string_lossy().into_owned(), v)
        })
        .filter(|(_, v)| v.get("results_json_text").is_some())
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 3, "the fixture cases are there");
    out
}

/// The case's arguments as `lmf eval` takes them (paths from the repository root).
fn argv(case: &Value, save_dir: &Path) -> Vec<String> {
    let mut out = vec![];
    for (k, v) in case["args"].as_object().unwrap() {
        let v = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let v = match k.as_str() {
            "model_name_or_path" | "task_dir" => format!("{ROOT}/{v}"),
            "save_dir" => save_dir.display().to_string(),
            "trust_remote_code" => continue,
            _ => v,
        };
        out.push(format!("{k}={v}"));
    }
    out
}

#[test]
fn eval_results_equal_llamafactory_0_9_3() {
    for (name, case) in cases() {
        let save = std::env::temp_dir().join(format!("lmf-eval-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&save);
        let args = parse_eval_args(&argv(&case, &save)).unwrap_or_else(|e| panic!("{name}: {e}"));
        run_eval(&args).unwrap_or_else(|e| panic!("{name}: {e}"));
        let json = std::fs::read_to_string(save.join("results.json")).unwrap();
        assert_eq!(
            json,
            case["results_json_text"].as_str().unwrap(),
            "{name}: results.json"
        );
        let log = std::fs::read_to_string(save.join("results.log")).unwrap();
        assert_eq!(
            log,
            case["results_log"].as_str().unwrap(),
            "{name}: results.log"
        );
        let _ = std::fs::remove_dir_all(&save);
    }
}

#[test]
fn few_shot_draws_and_prompts_equal_llamafactory() {
    for (name, case) in cases() {
        let save =
            std::env::temp_dir().join(format!("lmf-eval-draws-{}-{name}", std::process::id()));
        let args = parse_eval_args(&argv(&case, &save)).unwrap();
        let (model, tok, template) =
            load_for_inference(&args.model, &args.data, &args.finetuning).unwrap();
        drop(model);
        let (task, split) = args.task_and_split();
        let mut folder = TaskFolder::open(&PathBuf::from(&args.eval.task_dir), task).unwrap();
        let et = EvalTemplate::of(args.eval.lang);
        let mut draw = SupportDraw::new(args.eval.seed as u64);
        let mut rows_seen = 0;
        for s in case["subjects"].as_array().unwrap() {
            let key = s["subject"].as_str().unwrap();
            let subject = folder
                .subjects
                .iter()
                .find(|x| x.key == key)
                .unwrap()
                .clone();
            let dev = folder.questions(key, "train").unwrap();
            let qs = folder.questions(key, split).unwrap();
            for (q, row) in qs.iter().zip(s["rows"].as_array().unwrap()) {
                let perm = draw.shuffle(dev.len());
                let want: Vec<usize> = row["permutation"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap() as usize)
                    .collect();
                assert_eq!(perm, want, "{name} {key} row {}: the shuffle", row["index"]);
                let support: Vec<_> = perm
                    .iter()
                    .take(args.eval.n_shot as usize)
                    .map(|&i| &dev[i])
                    .collect();
                let messages = et.messages(q, &support, &subject.name);
                let (ids, _) = template
                    .encode_oneturn(&tok, &messages, None, None)
                    .unwrap();
                let want: Vec<u32> = row["input_ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap() as u32)
                    .collect();
                assert_eq!(
                    ids, want,
                    "{name} {key} row {}: the prompt ids",
                    row["index"]
                );
                assert_eq!(q.answer, row["label"].as_str().unwrap());
                rows_seen += 1;
            }
        }
        assert!(rows_seen > 0, "{name}");
    }
}

#[test]
fn existing_save_dir_is_refused_before_anything_runs() {
    let dir = std::env::temp_dir().join(format!("lmf-eval-exists-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (_, case) = cases().into_iter().next().unwrap();
    let e = parse_eval_args(&argv(&case, &dir)).unwrap_err().to_string();
    assert!(e.contains("`save_dir` already exists"), "{e}");
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "nothing written"
    );
}
