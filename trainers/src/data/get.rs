//! `get_dataset` (LLaMA-Factory `loader.get_dataset`): load and convert every dataset, merge
//! them, split off the validation set, encode each set with the stage's processor in batches of
//! `preprocessing_batch_size` (packing and pt blocks work per batch, as in LF; so does kto's KL
//! pairing), and save or load the result under `tokenized_path`. Stages pt and sft give
//! [`Example`] rows ([`get_dataset`]); rm and dpo [`PairExample`] rows, kto [`KtoExample`] rows
//! ([`get_stage_dataset`]).

use std::path::{Path, PathBuf};

use lmf_models::Tokenizer;

use super::cache;
use super::convert::{convert_row, Converted};
use super::dataset_info::get_dataset_list;
use super::encoder::{Encoder, StageRows};
use super::example::{DatasetModule, EpochRows, KtoExample, PairExample};
use super::load::{load_dataset, RowOrigin};
use super::mix::{merge, train_test_split};
use super::numpy_rng::LegacyRng;
use super::stream::{concat_order, TrainStream};
use crate::args::data::MixStrategy;
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
pub(crate) struct Row {
    /// Index into [`Sources`].
    pub source: usize,
    /// File and row index in the source.
    pub origin: RowOrigin,
    /// The row in LF's unified form.
    pub row: Converted,
}

/// The datasets read, for naming rows in errors.
#[derive(Clone, Default)]
pub(crate) struct Sources(Vec<(String, Vec<PathBuf>)>);

impl Sources {
    /// "dataset `name`, file, row i" of a row.
    pub fn locate(&self, r: &Row) -> String {
        let (name, files) = &self.0[r.source];
        let file = files
            .get(r.origin.file)
            .map(|f| f.display().to_string())
            .unwrap_or_default();
        format!("dataset `{name}`, {file}, row {}", r.origin.index)
    }
}

/// The encoded datasets of any stage [`get_stage_dataset`] encodes.
#[derive(Clone, Debug)]
pub enum StageDataset {
    /// pt and sft.
    Plain(DatasetModule),
    /// rm and dpo (LF's pairwise processor).
    Pairwise(DatasetModule<PairExample>),
    /// kto (LF's feedback processor).
    Feedback(DatasetModule<KtoExample>),
}

/// LF's `get_dataset` for stages pt and sft (the other stages: [`get_stage_dataset`]).
pub fn get_dataset(
    template: &Template,
    tok: &Tokenizer,
    data_args: &DataArguments,
    stage: Stage,
    opts: &DataOptions,
) -> Result<DatasetModule> {
    build(template, tok, data_args, stage, opts)
}

/// LF's `get_dataset` with the processor LF's workflow of `stage` uses: pre-training for pt,
/// supervised for sft, pairwise for rm and dpo (LF's dpo workflow asks for stage `rm`'s
/// datasets), feedback for kto, unsupervised (prompts) for ppo.
pub fn get_stage_dataset(
    template: &Template,
    tok: &Tokenizer,
    data_args: &DataArguments,
    stage: Stage,
    opts: &DataOptions,
) -> Result<StageDataset> {
    Ok(match stage {
        Stage::Pt | Stage::Sft => {
            StageDataset::Plain(build(template, tok, data_args, stage, opts)?)
        }
        Stage::Rm | Stage::Dpo => {
            StageDataset::Pairwise(build(template, tok, data_args, stage, opts)?)
        }
        Stage::Kto => StageDataset::Feedback(build(template, tok, data_args, stage, opts)?),
        // The rollout prompts: LF's unsupervised processor (prompt ids with the generation
        // prompt; `labels` hold the dataset's answer, unused by PPO).
        Stage::Ppo => StageDataset::Plain(build(template, tok, data_args, stage, opts)?),
    })
}

/// The whole path for rows of kind `R`.
fn build<R: StageRows + Clone + Send + Sync + 'static>(
    template: &Template,
    tok: &Tokenizer,
    data_args: &DataArguments,
    stage: Stage,
    opts: &DataOptions,
) -> Result<DatasetModule<R>> {
    if !R::takes(stage) {
        return Err(Error::Msg(format!(
            "stage `{}` does not train on {} rows",
            stage.as_str(),
            R::KIND
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
    if let Some(path) = &data_args.tokenized_path {
        let dir = Path::new(path);
        if cache::has_tokenized_data(dir) {
            eprintln!("[WARNING] Loading dataset from disk will ignore other data arguments.");
            let mut module: DatasetModule<R> = cache::load(dir)?;
            if data_args.streaming {
                // LF: `to_iterable_dataset()` without a shuffle, the saved order every epoch
                let rows = module.train.clone();
                module.stream = Some(EpochRows::new(move |_| Ok(rows.clone())));
            }
            return Ok(module);
        }
        if data_args.streaming {
            return Err(Error::Msg(
                "Turn off `streaming` when saving dataset to disk.".into(),
            ));
        }
    }
    if data_args.streaming {
        return build_streaming(template, tok, data_args, stage, opts);
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
    let mut module = DatasetModule::<R>::default();
    if let Some(rows) = train.filter(|_| opts.do_train) {
        module.train = enc.encode_set(&rows, stage == Stage::Ppo)?;
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
    let parts = load_each(names, dataset_dir, data_args, stage, sources, legacy)?;
    merge(
        parts,
        data_args.mix_strategy,
        data_args.interleave_probs.as_deref(),
        opts.seed,
    )
}

/// Loads and converts the datasets called `names`, each on its own. In streaming mode LF
/// ignores `num_samples`.
fn load_each(
    names: &[String],
    dataset_dir: &Path,
    data_args: &DataArguments,
    stage: Stage,
    sources: &mut Sources,
    legacy: &mut LegacyRng,
) -> Result<Vec<Vec<Row>>> {
    let attrs = get_dataset_list(names, dataset_dir)?;
    let max_samples = match data_args.max_samples {
        Some(n) if n < 0 => return Err(Error::Msg(format!("max_samples must be >= 0, got {n}"))),
        Some(n) => Some(n as usize),
        None => None,
    };
    let mut all = Vec::with_capacity(attrs.len());
    for (name, attr) in names.iter().zip(&attrs) {
        // LF's rm and dpo workflows both load stage `rm`'s datasets: ranking ones only
        let ranking_stage = matches!(stage, Stage::Rm | Stage::Dpo);
        if attr.ranking != ranking_stage {
            return Err(Error::Msg(format!(
                "The dataset is not applicable in the current training stage. (dataset `{name}` \
                 has ranking: {}; stage `{}` takes {} datasets)",
                attr.ranking,
                stage.as_str(),
                if ranking_stage {
                    "only ranking"
                } else {
                    "no ranking"
                }
            )));
        }
        let mut attr = attr.clone();
        if data_args.streaming {
            attr.num_samples = None;
        }
        let ds = load_dataset(name, &attr, dataset_dir, max_samples, legacy)?;
        let source = sources.0.len();
        let mut rows = Vec::with_capacity(ds.rows.len());
        for (origin, raw) in &ds.rows {
            let row = convert_row(&attr, raw)
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
    Ok(all)
}

/// `get_dataset` with `streaming: true`: each dataset becomes a one-shard `IterableDataset`
/// (LF's `to_iterable_dataset(num_shards=dataloader_num_workers)`, which must be 1), several are
/// concatenated, and the training stream is shuffled through a buffer of `buffer_size` with
/// `seed`, anew each epoch (see [`super::stream`]); an integer `val_size` k takes the first k
/// rows of epoch 0 as the validation set and trains on the rest of each epoch's order. A
/// merged `eval_dataset` is shuffled the same way (at epoch 0, which every evaluation sees);
/// with `eval_on_each_dataset` each set stays in file order, as in LF.
fn build_streaming<R: StageRows + Clone + Send + Sync + 'static>(
    template: &Template,
    tok: &Tokenizer,
    data_args: &DataArguments,
    stage: Stage,
    opts: &DataOptions,
) -> Result<DatasetModule<R>> {
    if stage == Stage::Ppo {
        return Err(Error::Msg(
            "`streaming` is not implemented for stage ppo in lmf".into(),
        ));
    }
    let several = |names: &Option<Vec<String>>| names.as_ref().is_some_and(|n| n.len() > 1);
    if data_args.mix_strategy != MixStrategy::Concat
        && (several(&data_args.dataset)
            || (several(&data_args.eval_dataset) && !data_args.eval_on_each_dataset))
    {
        return Err(Error::Msg(format!(
            "mix_strategy `{}` with `streaming` is not implemented in lmf (HF interleaves \
             iterable datasets by its own sampling); use `mix_strategy: concat`",
            data_args.mix_strategy.as_str()
        )));
    }
    let buffer = usize::try_from(data_args.buffer_size)
        .ok()
        .filter(|&b| b > 0)
        .ok_or_else(|| Error::Msg("buffer_size must be at least 1".into()))?;
    let seed = opts.seed;
    let mut sources = Sources::default();
    let mut legacy = LegacyRng::new(seed);
    let dataset_dir = Path::new(&data_args.dataset_dir);
    let mut load = |names: &[String], sources: &mut Sources| {
        load_each(names, dataset_dir, data_args, stage, sources, &mut legacy)
    };
    let train_parts = match &data_args.dataset {
        Some(names) => Some(load(names, &mut sources)?),
        None => None,
    };
    let mut eval_sets: Vec<(String, Vec<Row>)> = Vec::new();
    if let Some(names) = &data_args.eval_dataset {
        if data_args.eval_on_each_dataset {
            for name in names {
                let mut parts = load(std::slice::from_ref(name), &mut sources)?;
                eval_sets.push((name.clone(), parts.pop().unwrap_or_default()));
            }
        } else {
            let (rows, lengths) = concatenate(load(names, &mut sources)?);
            let order = concat_order(&lengths, buffer, seed, 0);
            eval_sets.push((
                String::new(),
                order.iter().map(|&i| rows[i].clone()).collect(),
            ));
        }
    }
    let mut skip = 0;
    let train = match train_parts {
        Some(parts) => {
            let (rows, lengths) = concatenate(parts);
            if data_args.val_size > 1e-6 {
                if !eval_sets.is_empty() {
                    return Err(Error::Msg(
                        "Cannot specify `val_size` if `eval_dataset` is not None.".into(),
                    ));
                }
                // LF's take(int(val_size)) / skip(int(val_size)) of the shuffled stream
                skip = data_args.val_size as usize;
                let order = concat_order(&lengths, buffer, seed, 0);
                let val = order.iter().take(skip).map(|&i| rows[i].clone()).collect();
                eval_sets.push((String::new(), val));
            }
            Some((rows, lengths))
        }
        None => None,
    };
    let enc = Encoder {
        template,
        tok,
        data_args,
        stage,
        sources: &sources,
        add_bos_token: opts.add_bos_token,
    };
    let mut module = DatasetModule::<R>::default();
    if let Some((rows, lengths)) = train.filter(|_| opts.do_train) {
        let stream = TrainStream::new(rows, lengths, buffer, seed, skip, &enc);
        module.train = stream.epoch(0)?;
        module.stream = Some(EpochRows::new(move |e| stream.epoch(e)));
    }
    for (name, rows) in eval_sets {
        let encoded = enc.encode_set(&rows, opts.predict_with_generate)?;
        module.eval.push((name, encoded));
    }
    Ok(module)
}

/// The rows of `parts` one after another, with each part's length.
fn concatenate(parts: Vec<Vec<Row>>) -> (Vec<Row>, Vec<usize>) {
    let lengths = parts.iter().map(Vec::len).collect();
    (parts.into_iter().flatten().collect(), lengths)
}
