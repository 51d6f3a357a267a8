//! The repository's preference demo sets (`data/dpo_demo.json`, `data/kto_demo.json`) through
//! `get_stage_dataset`, as `lmf train` reads them for stages rm / dpo / kto: every row is kept,
//! each keeps a non-empty response, and the row and token totals are LLaMA-Factory 0.9.5's own
//! on the same files (`data/check_lf.py`, tiny Llama of `tests/fixtures/hf/train`, template
//! llama3). Regenerating the demo sets changes the totals: rerun `check_lf.py` and update
//! [`LF`].

use lmf_models::Tokenizer;
use lmf_trainers::args::finetuning::Stage;
use lmf_trainers::args::DataArguments;
use lmf_trainers::data::{get_stage_dataset, DataOptions, Example, StageDataset};
use lmf_trainers::template::{Template, TemplateOptions};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// One line of `check_lf.py`'s totals.
struct Totals {
    stage: Stage,
    cutoff_len: i64,
    rows: usize,
    /// [tokens, labelled tokens] of the chosen rows (kto: the rows).
    first: [usize; 2],
    /// The same of the rejected rows (kto: the KL rows).
    second: [usize; 2],
    /// Desirable rows (kto; 0 otherwise).
    desirable: usize,
}

const fn t(
    stage: Stage,
    cutoff_len: i64,
    rows: usize,
    first: [usize; 2],
    second: [usize; 2],
) -> Totals {
    Totals {
        stage,
        cutoff_len,
        rows,
        first,
        second,
        desirable: if matches!(stage, Stage::Kto) { 20 } else { 0 },
    }
}

/// `check_lf.py`'s totals (kto_demo has 20 desirable rows).
const LF: [Totals; 6] = [
    t(Stage::Rm, 128, 50, [4019, 1648], [3560, 1189]),
    t(Stage::Rm, 1024, 50, [4407, 1856], [3782, 1231]),
    t(Stage::Dpo, 128, 50, [4019, 1648], [3560, 1189]),
    t(Stage::Dpo, 1024, 50, [4407, 1856], [3782, 1231]),
    t(Stage::Kto, 128, 40, [3162, 1265], [3170, 1304]),
    t(Stage::Kto, 1024, 40, [3402, 1395], [3402, 1395]),
];

fn encode(stage: Stage, cutoff_len: i64) -> StageDataset {
    let dataset = if stage == Stage::Kto {
        "kto_demo"
    } else {
        "dpo_demo"
    };
    let mut data_args = DataArguments {
        template: Some("llama3".into()),
        dataset: Some(vec![dataset.into()]),
        dataset_dir: format!("{ROOT}/data"),
        cutoff_len,
        ..DataArguments::default()
    };
    data_args.post_init().unwrap();
    let model = format!("{ROOT}/tests/fixtures/hf/train/models/llama");
    let mut tok = Tokenizer::from_dir(std::path::Path::new(&model)).unwrap();
    let template =
        Template::for_tokenizer(Some("llama3"), &mut tok, &TemplateOptions::default()).unwrap();
    let opts = DataOptions {
        do_train: true,
        seed: 42,
        ..DataOptions::default()
    };
    get_stage_dataset(&template, &tok, &data_args, stage, &opts)
        .unwrap_or_else(|e| panic!("{dataset} for stage {}: {e}", stage.as_str()))
}

/// [tokens, labelled tokens] of a row; the row must have a response and fit `cutoff_len`.
fn totals(at: &str, r: &Example, cutoff_len: i64) -> [usize; 2] {
    let labelled = r.labels.iter().filter(|&&l| l != -100).count();
    assert!(labelled > 0, "{at}: no labelled (response) tokens");
    assert!(
        r.input_ids.len() as i64 <= cutoff_len,
        "{at}: longer than cutoff_len"
    );
    assert_eq!(r.labels.len(), r.input_ids.len(), "{at}: labels");
    [r.input_ids.len(), labelled]
}

fn add(a: &mut [usize; 2], b: [usize; 2]) {
    a[0] += b[0];
    a[1] += b[1];
}

#[test]
fn demo_preference_sets_encode_like_llamafactory() {
    for Totals {
        stage,
        cutoff_len: cutoff,
        rows,
        first,
        second,
        desirable,
    } in LF
    {
        let case = format!("stage {} cutoff_len {cutoff}", stage.as_str());
        let (mut a, mut b, mut good) = ([0; 2], [0; 2], 0);
        match encode(stage, cutoff) {
            StageDataset::Pairwise(m) => {
                assert_ne!(stage, Stage::Kto, "{case}");
                assert_eq!(m.train.len(), rows, "{case}: pairs");
                assert!(m.eval.is_empty(), "{case}");
                for (i, p) in m.train.iter().enumerate() {
                    let at = format!("{case} pair {i}");
                    add(&mut a, totals(&format!("{at} chosen"), &p.chosen, cutoff));
                    add(
                        &mut b,
                        totals(&format!("{at} rejected"), &p.rejected, cutoff),
                    );
                    assert_ne!(p.chosen.input_ids, p.rejected.input_ids, "{at}");
                }
            }
            StageDataset::Feedback(m) => {
                assert_eq!(stage, Stage::Kto, "{case}");
                assert_eq!(m.train.len(), rows, "{case}: rows");
                for (i, r) in m.train.iter().enumerate() {
                    let at = format!("{case} row {i}");
                    add(&mut a, totals(&at, &r.example, cutoff));
                    add(&mut b, totals(&format!("{at} kl"), &r.kl, cutoff));
                    good += usize::from(r.desirable);
                }
                // the rows a small `max_samples` keeps hold both kinds of feedback
                let head: Vec<bool> = m.train[..4].iter().map(|r| r.desirable).collect();
                assert!(head.contains(&true) && head.contains(&false), "{head:?}");
            }
            StageDataset::Plain(_) => panic!("{case}: plain rows"),
        }
        assert_eq!(a, first, "{case}: chosen / kto [tokens, labelled]");
        assert_eq!(b, second, "{case}: rejected / kl [tokens, labelled]");
        assert_eq!(good, desirable, "{case}: desirable rows");
    }
}
