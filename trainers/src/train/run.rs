//! The public entries of `lmf train`: [`run_sft`] (a ready model, tokenizer and dataset →
//! LLaMA-Factory's `run_pt` / `run_sft`: full / freeze set-up, train, evaluate, predict) and
//! [`run`] (argv → everything), which the CLI calls: [`load_template`], [`load_dataset`]
//! (`data::get_dataset`) and [`model_io`] (full / freeze HF folders, or LoRA set up by
//! [`crate::tuner`] and saved as a PEFT folder).

use std::path::{Path, PathBuf};

use lmf_autograd::Device;
use lmf_models::{CausalLM, Tokenizer};

use crate::args::finetuning::FinetuningType;
use crate::args::train::{parse_train_args, TrainArgs};
use crate::data::{get_dataset, get_stage_dataset, DataOptions, DatasetModule, StageDataset};
use crate::template::Template;
use crate::train::config::TrainConfig;
use crate::train::export::{HfModelIo, ModelIo};
use crate::train::freeze::{freeze_trainable, full_trainable, FreezeSpec};
use crate::train::predict::predict;
use crate::train::pref::workflow::run_pref;
use crate::train::{run_workflow, WorkflowOutcome};
use crate::tuner::{new_lora_config, setup_lora, LoraModelIo};
use crate::{Error, Result};
use lmf_models::adapter::{LoraConfig, LoraInit};

/// Marks what trains for `finetuning_type: full` / `freeze` (LLaMA-Factory's
/// `_setup_full_tuning` / `_setup_freeze_tuning`); returns the trainable names. Other types
/// leave the model as it is (LoRA sets up its own adapters).
pub fn setup_trainable(model: &mut CausalLM, args: &TrainArgs) -> Result<Vec<String>> {
    let f = &args.finetuning;
    let names: Vec<String> = model
        .named_parameters()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let trainable = match f.finetuning_type {
        FinetuningType::Full => full_trainable(&names),
        FinetuningType::Freeze => {
            let spec = FreezeSpec {
                trainable_layers: f.freeze_trainable_layers,
                trainable_modules: f.freeze_trainable_modules.clone(),
                extra_modules: f.freeze_extra_modules.clone().unwrap_or_default(),
                use_llama_pro: f.use_llama_pro,
            };
            freeze_trainable(&names, model.layers.len(), &spec)?.0
        }
        _ => {
            return Ok(model
                .trainable_parameters()
                .into_iter()
                .map(|(n, _)| n)
                .collect())
        }
    };
    model.set_trainable(|n| trainable.iter().any(|t| t == n));
    Ok(trainable)
}

/// LLaMA-Factory's `run_sft` / `run_pt` on a loaded model: trainable set-up (full / freeze),
/// training with the HF loop, evaluation, and (sft) `do_predict` with generation. `io` saves
/// and restores what trains (use [`model_io`]).
pub fn run_sft(
    args: &TrainArgs,
    model: &mut CausalLM,
    tokenizer: &Tokenizer,
    dataset: &DatasetModule,
    io: &dyn ModelIo,
) -> Result<WorkflowOutcome> {
    let t = &args.training;
    let cfg = TrainConfig::from_args(t, &args.finetuning, &args.model)?;
    if t.do_train {
        setup_trainable(model, args)?;
    }
    let mut out = run_workflow(model, &cfg, io, dataset, t.do_train, t.do_eval)?;
    if t.do_predict {
        let rows = dataset
            .eval
            .first()
            .map(|(_, r)| r.as_slice())
            .ok_or_else(|| Error::Msg("do_predict needs an eval dataset".into()))?;
        let metrics = predict(
            model,
            tokenizer,
            rows,
            &args.generating,
            cfg.eval_batch_size,
            cfg.seed,
            &cfg.output_dir,
        )?;
        out.predict = Some(metrics);
    }
    Ok(out)
}

/// The template of the run, fixing the tokenizer for it (LLaMA-Factory's
/// `get_template_and_fix_tokenizer`).
pub fn load_template(args: &TrainArgs, tokenizer: &mut Tokenizer) -> Result<Template> {
    let d = &args.data;
    let options = d.template_options();
    Ok(Template::for_tokenizer(
        d.template.as_deref(),
        tokenizer,
        &options,
    )?)
}

/// What the data pipeline needs of the training arguments.
fn data_options(args: &TrainArgs) -> DataOptions {
    let t = &args.training;
    DataOptions {
        do_train: t.do_train,
        do_eval: t.do_eval,
        do_predict: t.do_predict,
        predict_with_generate: t.predict_with_generate,
        seed: t.seed as u64,
        add_bos_token: false,
    }
}

/// The encoded datasets of the run (LLaMA-Factory's `get_dataset`).
pub fn load_dataset(
    args: &TrainArgs,
    template: &Template,
    tokenizer: &Tokenizer,
) -> Result<DatasetModule> {
    let opts = data_options(args);
    get_dataset(
        template,
        tokenizer,
        &args.data,
        args.finetuning.stage,
        &opts,
    )
}

/// The encoded datasets of any stage (LLaMA-Factory's `get_dataset` with the stage's
/// processor: rows for pt / sft, pairs for rm / dpo, feedback rows for kto).
pub fn load_stage_dataset(
    args: &TrainArgs,
    template: &Template,
    tokenizer: &Tokenizer,
) -> Result<StageDataset> {
    let opts = data_options(args);
    get_stage_dataset(
        template,
        tokenizer,
        &args.data,
        args.finetuning.stage,
        &opts,
    )
}

/// How the run's weights are saved and restored: an HF model folder for full / freeze, a PEFT
/// folder for LoRA (whose adapter this also sets up: merged, resumed or new, see
/// [`crate::tuner::setup_lora`]). `chat_template` (the tokenizer's, the run's template applied)
/// is saved as `chat_template.jinja` with every save, as LLaMA-Factory's tokenizer save does.
pub fn model_io(
    args: &TrainArgs,
    model: &mut CausalLM,
    model_dir: &Path,
    chat_template: Option<String>,
) -> Result<Box<dyn ModelIo>> {
    let hf = |chat_template| {
        let mut io = HfModelIo::new(Some(model_dir.to_path_buf()));
        io.chat_template = chat_template;
        io
    };
    match args.finetuning.finetuning_type {
        FinetuningType::Full | FinetuningType::Freeze => Ok(Box::new(hf(chat_template))),
        FinetuningType::Lora => {
            let t = &args.training;
            let trainable = t.do_train;
            let cfg = setup_lora(
                model,
                &args.model,
                &args.finetuning,
                trainable,
                t.seed as u64,
            )?;
            let base = args.model.model_name_or_path.clone().unwrap_or_default();
            match cfg {
                Some(config) => Ok(Box::new(LoraModelIo {
                    config,
                    base_model: base,
                    source_dir: Some(model_dir.to_path_buf()),
                    chat_template,
                })),
                // eval / predict only: every adapter is merged and nothing is saved
                None => Ok(Box::new(hf(chat_template))),
            }
        }
        other => Err(Error::Msg(format!(
            "finetuning_type `{}` is not implemented yet in lmf",
            other.as_str()
        ))),
    }
}

/// `lmf train config.yaml [key=value ...]`: parses the arguments, loads the model (on the
/// device `train::device` picks: the first GPU, else the CPU in fp32) and tokenizer, then the dataset and the weight hook, and runs [`run_sft`]. Prints the
/// argument notes to stderr.
pub fn run(argv: &[String]) -> Result<WorkflowOutcome> {
    let args = parse_train_args(argv)?;
    for note in &args.notes {
        eprintln!("note: {note}");
    }
    // Before any loading, so a bad LMF_DEVICE fails at once.
    let device = super::device::train_device(args.training.use_cpu)?;
    if device.is_cpu() {
        // `fp16` is refused before anything loads
        super::device::cpu_precision_note(args.training.bf16, args.training.fp16)?;
    }
    if args.finetuning.pure_bf16 {
        // LF's check is `is_torch_bf16_gpu_available()`: a CPU never qualifies.
        return Err(Error::Msg(if device.is_cpu() {
            "This device does not support `pure_bf16`.".into()
        } else {
            "`pure_bf16` (bf16 weights and optimizer state) is not implemented yet on the GPU; \
             `bf16: true` trains in bf16 with fp32 master weights"
                .into()
        }));
    }
    let m = &args.model;
    let name = m
        .model_name_or_path
        .as_deref()
        .ok_or_else(|| Error::Msg("`model_name_or_path` is required".into()))?;
    let dir: PathBuf = m.resolve_dir(name)?;
    let mut tokenizer = Tokenizer::from_dir(&dir)?;
    let template = load_template(&args, &mut tokenizer)?;
    let dataset = load_stage_dataset(&args, &template, &tokenizer)?;
    let t = &args.training;
    let dtype = super::device::compute_dtype(device, t.bf16, t.fp16);
    if device != Device::Cpu {
        eprintln!(
            "note: training on {device} in {dtype} (fp32 master weights and optimizer state)"
        );
    }
    let quant = m.quant_spec()?;
    match &quant {
        Some(lmf_models::QuantSpec::Mxfp4Experts) => {
            eprintln!("Keeping the MXFP4 experts 4-bit (dequant-matmul).")
        }
        Some(q) => eprintln!("Quantizing model to {} bit with bitsandbytes.", q.bits()),
        None => {}
    }
    let mut model = if m.train_from_scratch {
        if quant.is_some() {
            return Err(Error::Msg(
                "`train_from_scratch` with `quantization_bit` is not supported: a random model \
                 has nothing to quantize"
                    .into(),
            ));
        }
        super::scratch::from_scratch(&dir, args.training.seed.max(0) as u64, dtype, device)?
    } else {
        CausalLM::load_quantized(&dir, dtype, device, quant.as_ref())?
    };
    if model.is_quantized()
        && args.finetuning.finetuning_type != crate::args::finetuning::FinetuningType::Lora
    {
        // a checkpoint saved quantized, with full or freeze tuning (LF's `init_adapter`)
        return Err(Error::Msg(
            "Quantized models can only be used for the LoRA or OFT tuning.".into(),
        ));
    }
    let io = model_io(
        &args,
        &mut model,
        &dir,
        tokenizer.chat_template().map(str::to_string),
    )?;
    let f = &args.finetuning;
    let out_dir = PathBuf::from(args.training.output_dir.as_deref().unwrap_or("."));
    // LLaMA-Factory's PissaConvertCallback: the initial PiSSA adapter is kept (as plain-init
    // LoRA) so the trained one can be rewritten as a rank-2r LoRA on the original weights.
    let pissa = (f.pissa_init && f.pissa_convert && args.training.do_train)
        .then(|| -> Result<LoraConfig> {
            let mut cfg = new_lora_config(&model, f)?;
            cfg.init = LoraInit::Default;
            model.save_adapter(&out_dir.join("pissa_init"), &cfg, &base_name(&args))?;
            Ok(cfg)
        })
        .transpose()?;
    let out = match &dataset {
        StageDataset::Plain(data) if f.stage == crate::args::finetuning::Stage::Ppo => {
            super::ppo::run_ppo(
                &args,
                &mut model,
                &tokenizer,
                &template,
                data,
                io.as_ref(),
                &dir,
            )?
        }
        StageDataset::Plain(data) => run_sft(&args, &mut model, &tokenizer, data, io.as_ref())?,
        pref => run_pref(&args, &mut model, pref, io.as_ref(), &dir)?,
    };
    if let Device::Cuda(n) = device {
        // The pool's high-water mark: every tensor, activation and workspace lmf allocated.
        if let Ok(gpu) = lmf_kernels::cuda::Gpu::get(n) {
            eprintln!(
                "note: peak CUDA memory {} bytes ({:.2} GiB) on {device}",
                gpu.peak_bytes(),
                gpu.peak_bytes() as f64 / (1u64 << 30) as f64
            );
        }
    }
    if let Some(cfg) = pissa {
        let base = base_name(&args);
        model.save_adapter(&out_dir.join("pissa_backup"), &cfg, &base)?;
        model.save_pissa_converted(
            &out_dir.join("pissa_converted"),
            &cfg,
            &base,
            &out_dir.join("pissa_init"),
        )?;
    }
    Ok(out)
}

/// `base_model_name_or_path` written into saved adapter configs.
fn base_name(args: &TrainArgs) -> String {
    args.model.model_name_or_path.clone().unwrap_or_default()
}
