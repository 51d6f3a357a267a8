//! `get_dataset` (LLaMA-Factory `loader.get_dataset`): load and convert every dataset, merge
//! them, split off the validation set, encode each set with the stage's processor in batches of
//! `preprocessing_batch_size` (packing and pt blocks work per batch, as in LF), and save or load
//! the result under `tokenized_path`.

use std::path::{Path, PathBuf};

use lmf_models::Tokenizer;

use super::cache;
use super::convert::{convert_row, Converted};
use super::dataset_info::get_dataset_list;
use super::encode::{encode_supervised, encode_unsupervised, is_supervised, SupervisedOptions};
use super::example::{DatasetModule, Example};
use super::load::{load_dataset, RowOrigin};
use super::mix::{merge, train_test_split};
use super::numpy_rng::LegacyRng;
use super::pack::pack_supervised;
use super::pretrain::{encode_pretrain, eos_text, PretrainOptions};
use crate::args::finetuning::Stage;
use crate::args::DataArguments;
use crate::template::Template;
use crate::{Error, Result};

/// What `get_dataset` needs from the training arguments and the tokenizer files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DataOptions {
    /// `do_train`: encode the training set (skipped otherwise; LF encodes it anyway).
    pub do_train: bool,
    /// `do_eval`.
    pub do_eval: bool,
    /// `do_predict`.
    pub do_predict: bool,
    /// `predict_with_generate`: evaluation sets get the unsupervised encoding.
    pub predict_with_generate: bool,
    /// `seed` (sampling, interleaving, the validation split).
    pub seed: u64,
    /// Put a bos first in pt rows (LF's `tokenizer.add_bos_token`). Leave it false for parity:
    /// transformers 5.6 drops `add_bos_token` from `tokenizer_config.json` whenever a
    /// `tokenizer.json` is present (always, for lmf), so LF never adds it (fixture case
    /// `llama3_pt_bos_*`).
    pub add_bos_token: bool,
}

/// A converted row and where it came from.
#[derive(Clone)]
struct Row {
    source: usize,
    origin: RowOrigin,
    row: Converted,
}

/// The datasets read, for naming rows in errors.
#[derive(Default)]
struct Sources(Vec<(String, Vec<PathBuf>)>);

impl Sources {
    fn locate(&self, r: &Row) -> String {
        let (name, files) = &self.0[r.source];
        let file = files
            .get(r.origin.file)
            .map(|f| f.display().to_string())
            .unwrap_or_default();
        format!("dataset `{name}`, {file}, row {}", r.origin.index)
    }
}

/// LF's `get_dataset` for stages pt and sft.
pub fn get_dataset(
    template: &Template,
    tok: &Tokenizer,
    data_args: &DataArguments,
    stage: Stage,
    opts: &DataOptions,
) -> Result<DatasetModule> {
    if !matches!(stage, Stage::Pt | Stage::Sft) {
        return Err(Error::Msg(format!(
            "datasets for stage `{}` are not implemented (pt and sft are)",
            stage.as_str()
        )));
    }
    if stage != Stage::Sft && data_args.neat_packing {
        return Err(Error::Msg(
            "`neat_packing` cannot be set as True except SFT.".into(),
        ));
    }
    if stage != Stage::Sft && (data_args.train_on_prompt || data_args.mask_history) {
        return Err(Error::Msg(
            "`train_on_prompt` or `mask_history` cannot be set as True except SFT.".into(),
        ));
    }
    if data_args.train_on_prompt && template.efficient_eos() {
        return Err(Error::Msg(
            "Current template does not support `train_on_prompt`.".into(),
        ));
    }
    if data_args.streaming {
        return Err(Error::Msg("`streaming` is not implemented".into()));
    }
    if let Some(path) = &data_args.tokenized_path {
        let dir = Path::new(path);
        if cache::has_tokenized_data(dir) {
            eprintln!("[WARNING] Loading dataset from disk will ignore other data arguments.");
            return cache::load(dir);
        }
    }

    let mut sources = Sources::default();
    // numpy's global state as `transformers.set_seed` leaves it (num_samples draws from it)
    let mut legacy = LegacyRng::new(opts.seed);
    let dataset_dir = Path::new(&data_args.dataset_dir);
    let train = match &data_args.dataset {
        Some(names) => Some(load_merged(
            names,
            dataset_dir,
            data_args,
            stage,
            opts,
            &mut sources,
            &mut legacy,
        )?),
        None => None,
    };
    let mut eval_sets: Vec<(String, Vec<Row>)> = Vec::new();
    if let Some(names) = &data_args.eval_dataset {
        if data_args.eval_on_each_dataset {
            for name in names {
                let one = std::slice::from_ref(name);
                let rows = load_merged(
                    one,
                    dataset_dir,
                    data_args,
                    stage,
                    opts,
                    &mut sources,
                    &mut legacy,
                )?;
                eval_sets.push((name.clone(), rows));
            }
        } else {
            let rows = load_merged(
                names,
                dataset_dir,
                data_args,
                stage,
                opts,
                &mut sources,
                &mut legacy,
            )?;
            eval_sets.push((String::new(), rows));
        }
    }
    let train = match train {
        Some(rows) if data_args.val_size > 1e-6 => {
            if !eval_sets.is_empty() {
                return Err(Error::Msg(
                    "Cannot specify `val_size` if `eval_dataset` is not None.".into(),
                ));
            }
            let (train, val) = train_test_split(rows, data_args.val_size, opts.seed)?;
            eval_sets.push((String::new(), val));
            Some(train)
        }
        other => other,
    };

    let enc = Encoder {
        template,
        tok,
        data_args,
        stage,
        sources: &sources,
        add_bos_token: opts.add_bos_token,
    };
    let mut module = DatasetModule::default();
    if let Some(rows) = train.filter(|_| opts.do_train) {
        module.train = enc.encode_set(&rows, false)?;
    }
    for (name, rows) in eval_sets {
        let encoded = enc.encode_set(&rows, opts.predict_with_generate)?;
        module.eval.push((name, encoded));
    }
    if let Some(path) = &data_args.tokenized_path {
        cache::save(Path::new(path), &module)?;
        eprintln!("[INFO] Tokenized dataset is saved at {path}.");
    }
    Ok(module)
}

/// Loads, converts and merges the datasets called `names`.
fn load_merged(
    names: &[String],
    dataset_dir: &Path,
    data_args: &DataArguments,
    stage: Stage,
    opts: &DataOptions,
    sources: &mut Sources,
    legacy: &mut LegacyRng,
) -> Result<Vec<Row>> {
    let attrs = get_dataset_list(names, dataset_dir)?;
    let max_samples = match data_args.max_samples {
        Some(n) if n < 0 => return Err(Error::Msg(format!("max_samples must be >= 0, got {n}"))),
        Some(n) => Some(n as usize),
        None => None,
    };
    let mut all = Vec::with_capacity(attrs.len());
    for (name, attr) in names.iter().zip(&attrs) {
        if attr.ranking != (stage == Stage::Rm) {
            return Err(Error::Msg(format!(
                "dataset `{name}`: the dataset is not applicable in the current training stage (ranking: {})",
                attr.ranking
            )));
        }
        let ds = load_dataset(name, attr, dataset_dir, max_samples, legacy)?;
        let source = sources.0.len();
        let mut rows = Vec::with_capacity(ds.rows.len());
        for (origin, raw) in &ds.rows {
            let row = convert_row(attr, raw)
                .map_err(|problem| Error::Msg(format!("{}: {problem}", ds.locate(origin))))?;
            rows.push(Row {
                source,
                origin: origin.clone(),
                row,
            });
        }
        sources.0.push((ds.name, ds.files));
        all.push(rows);
    }
    merge(
        all,
        data_args.mix_strategy,
        data_args.interleave_probs.as_deref(),
        opts.seed,
    )
}

/// Encodes sets of rows with the stage's processor.
struct Encoder<'a> {
    template: &'a Template,
    tok: &'a Tokenizer,
    data_args: &'a DataArguments,
    stage: Stage,
    sources: &'a Sources,
    add_bos_token: bool,
}

impl Encoder<'_> {
    fn at(&self, r: &Row, e: Error) -> Error {
        Error::Msg(format!("{}: {e}", self.sources.locate(r)))
    }

    fn cutoff(&self) -> Result<usize> {
        usize::try_from(self.data_args.cutoff_len)
            .ok()
            .filter(|&c| c > 0)
            .ok_or_else(|| {
                Error::Msg(format!(
                    "cutoff_len must be positive, got {}",
                    self.data_args.cutoff_len
                ))
            })
    }

    fn encode_set(&self, rows: &[Row], generate: bool) -> Result<Vec<Example>> {
        let batch = usize::try_from(self.data_args.preprocessing_batch_size)
            .ok()
            .filter(|&b| b > 0)
            .ok_or_else(|| {
                Error::Msg(format!(
                    "preprocessing_batch_size must be positive, got {}",
                    self.data_args.preprocessing_batch_size
                ))
            })?;
        let mut out = Vec::new();
        for chunk in rows.chunks(batch) {
            out.extend(self.encode_batch(chunk, generate)?);
        }
        if out.is_empty() && !rows.is_empty() {
            return Err(Error::Msg(if self.stage == Stage::Pt {
                "Cannot find sufficient samples, consider increasing dataset size.".into()
            } else {
                "Cannot find valid samples, check `data/README.md` for the data format.".into()
            }));
        }
        Ok(out)
    }

    fn encode_batch(&self, rows: &[Row], generate: bool) -> Result<Vec<Example>> {
        let da = self.data_args;
        if self.stage == Stage::Pt {
            let opts = PretrainOptions {
                cutoff_len: self.cutoff()?,
                packing: da.packing.unwrap_or(true),
                eos_text: eos_text(da.template.as_deref(), self.tok)?,
                add_bos_token: self.add_bos_token,
            };
            let converted: Vec<&Converted> = rows.iter().map(|r| &r.row).collect();
            return encode_pretrain(self.tok, &converted, &opts);
        }
        if generate {
            let mut out = Vec::new();
            for r in rows {
                if r.row.prompt.len() % 2 != 1 {
                    warn_dropped(&self.sources.locate(r));
                    continue;
                }
                let (ids, labels) =
                    encode_unsupervised(self.template, self.tok, &r.row, da.cutoff_len)
                        .map_err(|e| self.at(r, e))?;
                let n = ids.len();
                out.push(Example {
                    input_ids: ids,
                    labels: labels.into_iter().map(i64::from).collect(),
                    segments: vec![n],
                    position_ids: (0..n as u32).collect(),
                });
            }
            return Ok(out);
        }
        let opts = SupervisedOptions {
            cutoff_len: da.cutoff_len,
            train_on_prompt: da.train_on_prompt,
            mask_history: da.mask_history,
        };
        let mut encoded = Vec::with_capacity(rows.len());
        for r in rows {
            if !is_supervised(&r.row) {
                warn_dropped(&self.sources.locate(r));
                continue;
            }
            encoded.push(
                encode_supervised(self.template, self.tok, &r.row, &opts)
                    .map_err(|e| self.at(r, e))?,
            );
        }
        if da.packing.unwrap_or(false) {
            let pad = self.tok.pad_token_id().ok_or_else(|| {
                Error::Msg("packing needs a pad token and the tokenizer has none".into())
            })?;
            return Ok(pack_supervised(
                encoded,
                self.cutoff()?,
                pad,
                da.neat_packing,
            ));
        }
        Ok(encoded
            .into_iter()
            .map(|(ids, labels)| Example::single(ids, labels))
            .collect())
    }
}

fn warn_dropped(at: &str) {
    eprintln!("[WARNING] Dropped invalid example ({at}).");
}
