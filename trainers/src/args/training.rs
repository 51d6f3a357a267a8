//! `TrainingArguments` (LLaMA-Factory `hparams/training_args.py`): transformers 5.6's
//! `Seq2SeqTrainingArguments` fields, then LLaMA-Factory's Ray, FP8 and profiler extras and its
//! own `overwrite_output_dir`, in the final dataclass's field order (Python's MRO order).
//!
//! `lmf train` honours the fields marked `Implemented` (the HF Trainer loop of `crate::train`);
//! the rest refuse a non-default value. `get_infer_args` never reads this group (chat rejects
//! training keys, as LF does).

use serde_json::Value;

use super::multi::{FalseOnly, List, Union2};
use super::spec::lf_args;
use super::value::lf_choice;

lf_choice! {
    /// Learning-rate schedule (`lr_scheduler_type`, transformers `SchedulerType`).
    pub enum SchedulerType {
        /// Linear decay to 0 after warmup.
        Linear = "linear",
        /// Cosine decay.
        Cosine = "cosine",
        /// Cosine with hard restarts.
        CosineWithRestarts = "cosine_with_restarts",
        /// Polynomial decay.
        Polynomial = "polynomial",
        /// Constant rate.
        Constant = "constant",
        /// Constant after a linear warmup.
        ConstantWithWarmup = "constant_with_warmup",
        /// Inverse square root decay.
        InverseSqrt = "inverse_sqrt",
        /// Reduce when a metric plateaus.
        ReduceLrOnPlateau = "reduce_lr_on_plateau",
        /// Cosine down to a minimum rate.
        CosineWithMinLr = "cosine_with_min_lr",
        /// Warmup then cosine down to a minimum rate.
        CosineWarmupWithMinLr = "cosine_warmup_with_min_lr",
        /// Warmup, stable, then decay (WSD).
        WarmupStableDecay = "warmup_stable_decay",
        /// Greedy LR schedule.
        Greedy = "greedy",
    }
}

lf_choice! {
    /// Optimizer (`optim`, transformers `OptimizerNames`).
    pub enum OptimizerNames {
        /// PyTorch AdamW.
        AdamwTorch = "adamw_torch",
        /// PyTorch fused AdamW.
        AdamwTorchFused = "adamw_torch_fused",
        /// AdamW on XLA.
        AdamwTorchXla = "adamw_torch_xla",
        /// Fused AdamW on NPU.
        AdamwTorchNpuFused = "adamw_torch_npu_fused",
        /// Apex fused AdamW.
        AdamwApexFused = "adamw_apex_fused",
        /// Adafactor.
        Adafactor = "adafactor",
        /// AnyPrecision AdamW.
        AdamwAnyprecision = "adamw_anyprecision",
        /// torchao 4-bit AdamW.
        AdamwTorch4bit = "adamw_torch_4bit",
        /// torchao 8-bit AdamW.
        AdamwTorch8bit = "adamw_torch_8bit",
        /// AdEMAMix.
        Ademamix = "ademamix",
        /// SGD.
        Sgd = "sgd",
        /// Adagrad.
        Adagrad = "adagrad",
        /// bitsandbytes 8-bit AdamW.
        AdamwBnb8bit = "adamw_bnb_8bit",
        /// 8-bit AdamW.
        Adamw8bit = "adamw_8bit",
        /// 8-bit AdEMAMix.
        Ademamix8bit = "ademamix_8bit",
        /// 8-bit Lion.
        Lion8bit = "lion_8bit",
        /// 32-bit Lion.
        Lion32bit = "lion_32bit",
        /// Paged 32-bit AdamW.
        PagedAdamw32bit = "paged_adamw_32bit",
        /// Paged 8-bit AdamW.
        PagedAdamw8bit = "paged_adamw_8bit",
        /// Paged 32-bit AdEMAMix.
        PagedAdemamix32bit = "paged_ademamix_32bit",
        /// Paged 8-bit AdEMAMix.
        PagedAdemamix8bit = "paged_ademamix_8bit",
        /// Paged 32-bit Lion.
        PagedLion32bit = "paged_lion_32bit",
        /// Paged 8-bit Lion.
        PagedLion8bit = "paged_lion_8bit",
        /// RMSprop.
        Rmsprop = "rmsprop",
        /// bitsandbytes RMSprop.
        RmspropBnb = "rmsprop_bnb",
        /// bitsandbytes 8-bit RMSprop.
        RmspropBnb8bit = "rmsprop_bnb_8bit",
        /// bitsandbytes 32-bit RMSprop.
        RmspropBnb32bit = "rmsprop_bnb_32bit",
        /// GaLore AdamW.
        GaloreAdamw = "galore_adamw",
        /// GaLore 8-bit AdamW.
        GaloreAdamw8bit = "galore_adamw_8bit",
        /// GaLore Adafactor.
        GaloreAdafactor = "galore_adafactor",
        /// Layer-wise GaLore AdamW.
        GaloreAdamwLayerwise = "galore_adamw_layerwise",
        /// Layer-wise GaLore 8-bit AdamW.
        GaloreAdamw8bitLayerwise = "galore_adamw_8bit_layerwise",
        /// Layer-wise GaLore Adafactor.
        GaloreAdafactorLayerwise = "galore_adafactor_layerwise",
        /// LOMO.
        Lomo = "lomo",
        /// AdaLomo.
        Adalomo = "adalomo",
        /// GrokAdamW.
        Grokadamw = "grokadamw",
        /// Schedule-free RAdam.
        ScheduleFreeRadam = "schedule_free_radam",
        /// Schedule-free AdamW.
        ScheduleFreeAdamw = "schedule_free_adamw",
        /// Schedule-free SGD.
        ScheduleFreeSgd = "schedule_free_sgd",
        /// APOLLO AdamW.
        ApolloAdamw = "apollo_adamw",
        /// Layer-wise APOLLO AdamW.
        ApolloAdamwLayerwise = "apollo_adamw_layerwise",
        /// StableAdamW.
        StableAdamw = "stable_adamw",
    }
}

lf_choice! {
    /// When to log or evaluate (`logging_strategy`, `eval_strategy`; transformers
    /// `IntervalStrategy`).
    pub enum IntervalStrategy {
        /// Never.
        No = "no",
        /// Every `*_steps` steps.
        Steps = "steps",
        /// At the end of each epoch.
        Epoch = "epoch",
    }
}

lf_choice! {
    /// When to save checkpoints (`save_strategy`, transformers `SaveStrategy`).
    pub enum SaveStrategy {
        /// Never.
        No = "no",
        /// Every `save_steps` steps.
        Steps = "steps",
        /// At the end of each epoch.
        Epoch = "epoch",
        /// When a new best metric is reached.
        Best = "best",
    }
}

lf_choice! {
    /// What to push to the Hub and when (`hub_strategy`, transformers `HubStrategy`).
    pub enum HubStrategy {
        /// Only at the end.
        End = "end",
        /// At every save.
        EverySave = "every_save",
        /// At every save, plus the last checkpoint.
        Checkpoint = "checkpoint",
        /// Every checkpoint.
        AllCheckpoints = "all_checkpoints",
    }
}

lf_choice! {
    /// One FSDP option (`fsdp`, transformers `FSDPOption`).
    pub enum FsdpOption {
        /// Shard parameters, gradients and optimizer states.
        FullShard = "full_shard",
        /// Shard gradients and optimizer states.
        ShardGradOp = "shard_grad_op",
        /// No sharding.
        NoShard = "no_shard",
        /// Full shard within a node, replicate across nodes.
        HybridShard = "hybrid_shard",
        /// Shard-grad-op within a node, replicate across nodes.
        HybridShardZero2 = "hybrid_shard_zero2",
        /// Offload to CPU.
        Offload = "offload",
        /// Automatic wrapping.
        AutoWrap = "auto_wrap",
    }
}

lf_choice! {
    /// One debug option (`debug`, transformers `DebugOption`).
    pub enum DebugOption {
        /// Detect activation overflow / underflow.
        UnderflowOverflow = "underflow_overflow",
        /// Print TPU metrics.
        TpuMetricsDebug = "tpu_metrics_debug",
    }
}

lf_args! {
    /// Trainer settings of `lmf train` (LLaMA-Factory `TrainingArguments`, built on
    /// transformers 5.6's `Seq2SeqTrainingArguments`).
    pub struct TrainingArguments {
        /// Where checkpoints and the final model are written.
        output_dir: Option<String> = None => Implemented,
        /// Batch size per device for training.
        per_device_train_batch_size: i64 = 8 => Implemented,
        /// Number of training epochs (fractional allowed).
        num_train_epochs: f64 = 3.0 => Implemented,
        /// Total optimizer steps; overrides `num_train_epochs` when positive.
        max_steps: i64 = -1 => Implemented,
        /// Peak learning rate.
        learning_rate: f64 = 5e-5 => Implemented,
        /// Learning-rate schedule.
        lr_scheduler_type: SchedulerType = SchedulerType::Linear => Implemented,
        /// Extra arguments of the schedule.
        lr_scheduler_kwargs: Option<Value> = None => Implemented,
        /// Warmup steps (a value below 1 is a ratio of the total).
        warmup_steps: f64 = 0.0 => Implemented,
        /// Optimizer.
        optim: OptimizerNames = OptimizerNames::AdamwTorchFused => Implemented,
        /// Extra optimizer arguments (`k=v,k=v`).
        optim_args: Option<String> = None => NotImplemented,
        /// Decoupled weight decay.
        weight_decay: f64 = 0.0 => Implemented,
        /// Adam beta1.
        adam_beta1: f64 = 0.9 => Implemented,
        /// Adam beta2.
        adam_beta2: f64 = 0.999 => Implemented,
        /// Adam epsilon.
        adam_epsilon: f64 = 1e-8 => Implemented,
        /// Modules that GaLore / APOLLO-style optimizers target.
        optim_target_modules: Option<Union2<String, List<String>>> = None => NotImplemented,
        /// Micro-batches accumulated per optimizer step.
        gradient_accumulation_steps: i64 = 1 => Implemented,
        /// Normalise the loss by the token count across all devices.
        average_tokens_across_devices: bool = true => Implemented,
        /// Gradient clipping norm.
        max_grad_norm: f64 = 1.0 => Implemented,
        /// Label smoothing.
        label_smoothing_factor: f64 = 0.0 => Implemented,
        /// bf16 mixed precision (on the CPU: bf16 products, fp32 weights and state).
        bf16: bool = false => Implemented,
        /// fp16 mixed precision (GPU only: refused on the CPU).
        fp16: bool = false => Implemented,
        /// Evaluate in full bf16.
        bf16_full_eval: bool = false => NotImplemented,
        /// Evaluate in full fp16.
        fp16_full_eval: bool = false => NotImplemented,
        /// Allow TF32 matmuls.
        tf32: Option<bool> = None => NotImplemented,
        /// Recompute activations in the backward pass.
        gradient_checkpointing: bool = false => NotImplemented,
        /// Arguments of gradient checkpointing.
        gradient_checkpointing_kwargs: Option<Value> = None => NotImplemented,
        /// `torch.compile` the model.
        torch_compile: bool = false => NotImplemented,
        /// `torch.compile` backend.
        torch_compile_backend: Option<String> = None => NotImplemented,
        /// `torch.compile` mode.
        torch_compile_mode: Option<String> = None => NotImplemented,
        /// Use Liger kernels.
        use_liger_kernel: bool = false => NotImplemented,
        /// Which Liger kernels to apply.
        liger_kernel_config: Option<Value> = None => NotImplemented,
        /// Keep the KV cache during training.
        use_cache: bool = false => NotImplemented,
        /// NEFTune embedding noise.
        neftune_noise_alpha: Option<f64> = None => Implemented,
        /// Empty the accelerator cache every this many steps.
        torch_empty_cache_steps: Option<i64> = None => NotImplemented,
        /// Halve the batch size on out-of-memory.
        auto_find_batch_size: bool = false => NotImplemented,
        /// When to log.
        logging_strategy: IntervalStrategy = IntervalStrategy::Steps => Implemented,
        /// Log every this many steps (a value below 1 is a ratio of the total).
        logging_steps: f64 = 500.0 => Implemented,
        /// Log the first step too.
        logging_first_step: bool = false => Implemented,
        /// Log on every node, not only the main one.
        log_on_each_node: bool = true => NotImplemented,
        /// Skip NaN / inf losses when logging.
        logging_nan_inf_filter: bool = true => NotImplemented,
        /// Count input tokens seen (`no`, `all`, `non_padding`, or a boolean).
        include_num_input_tokens_seen: Union2<String, bool> = Union2::A("no".into()) => NotImplemented,
        /// Log level of the main process.
        log_level: String = "passive".into() => NotImplemented,
        /// Log level of the replicas.
        log_level_replica: String = "warning".into() => NotImplemented,
        /// Hide progress bars.
        disable_tqdm: Option<bool> = None => Implemented,
        /// Experiment trackers to report to.
        report_to: Option<Union2<String, List<String>>> = Some(Union2::A("none".into())) => Implemented,
        /// Run name for the trackers.
        run_name: Option<String> = None => Implemented,
        /// Project name for the trackers.
        project: String = "huggingface".into() => NotImplemented,
        /// Trackio Space id.
        trackio_space_id: Option<String> = None => NotImplemented,
        /// Trackio bucket id.
        trackio_bucket_id: Option<String> = None => NotImplemented,
        /// Trackio static Space id (false: no static Space).
        trackio_static_space_id: Option<Union2<String, FalseOnly>> = None => NotImplemented,
        /// When to evaluate.
        eval_strategy: IntervalStrategy = IntervalStrategy::No => Implemented,
        /// Evaluate every this many steps (default: `logging_steps`).
        eval_steps: Option<f64> = None => Implemented,
        /// Epochs or steps to wait before the first evaluation.
        eval_delay: f64 = 0.0 => Implemented,
        /// Batch size per device for evaluation.
        per_device_eval_batch_size: i64 = 8 => Implemented,
        /// Evaluate the loss only.
        prediction_loss_only: bool = false => NotImplemented,
        /// Evaluate before training.
        eval_on_start: bool = false => Implemented,
        /// Concatenate evaluation batches.
        eval_do_concat_batches: bool = true => NotImplemented,
        /// Gather evaluation objects across devices.
        eval_use_gather_object: bool = false => NotImplemented,
        /// Move predictions off the device every this many steps.
        eval_accumulation_steps: Option<i64> = None => NotImplemented,
        /// Extra inputs handed to `compute_metrics`.
        include_for_metrics: List<String> = List::default() => NotImplemented,
        /// Compute metrics per batch.
        batch_eval_metrics: bool = false => NotImplemented,
        /// Save only the model, not optimizer / scheduler states.
        save_only_model: bool = false => Implemented,
        /// When to save checkpoints.
        save_strategy: SaveStrategy = SaveStrategy::Steps => Implemented,
        /// Save every this many steps (a value below 1 is a ratio of the total).
        save_steps: f64 = 500.0 => Implemented,
        /// Save on every node.
        save_on_each_node: bool = false => NotImplemented,
        /// Keep at most this many checkpoints.
        save_total_limit: Option<i64> = None => Implemented,
        /// Checkpoint on SIGTERM.
        enable_jit_checkpoint: bool = false => NotImplemented,
        /// Push to the Hub.
        push_to_hub: bool = false => NotImplemented,
        /// Hub token.
        hub_token: Option<String> = None => NotImplemented,
        /// Make the Hub repository private.
        hub_private_repo: Option<bool> = None => NotImplemented,
        /// Hub repository id.
        hub_model_id: Option<String> = None => NotImplemented,
        /// What to push to the Hub and when.
        hub_strategy: HubStrategy = HubStrategy::EverySave => NotImplemented,
        /// Push even when the model did not change.
        hub_always_push: bool = false => NotImplemented,
        /// Hub revision to push to.
        hub_revision: Option<String> = None => NotImplemented,
        /// Load the best checkpoint at the end.
        load_best_model_at_end: bool = false => Implemented,
        /// Metric that picks the best checkpoint.
        metric_for_best_model: Option<String> = None => Implemented,
        /// Whether a larger metric is better.
        greater_is_better: Option<bool> = None => Implemented,
        /// Do not skip seen batches when resuming.
        ignore_data_skip: bool = false => Implemented,
        /// Restore callback states when resuming.
        restore_callback_states_from_checkpoint: bool = false => NotImplemented,
        /// Deterministic algorithms everywhere.
        full_determinism: bool = false => NotImplemented,
        /// Random seed.
        seed: i64 = 42 => Implemented,
        /// Seed of the data samplers.
        data_seed: Option<i64> = None => Implemented,
        /// Train on the CPU even where a GPU is visible (LLaMA-Factory CPU YAMLs carry it:
        /// transformers wants it for `bf16` without a GPU).
        use_cpu: bool = false => Implemented,
        /// Accelerate's `Accelerator` settings.
        accelerator_config: Option<Value> = None => NotImplemented,
        /// Accelerate's parallelism settings.
        parallelism_config: Option<Value> = None => NotImplemented,
        /// Drop the last incomplete batch.
        dataloader_drop_last: bool = false => Implemented,
        /// Data-loading worker processes.
        dataloader_num_workers: i64 = 0 => Ignored("the encoded dataset is in memory: there are no loader workers"),
        /// Pin host memory in data loaders.
        dataloader_pin_memory: bool = true => Ignored("the encoded dataset is in memory: there are no loader workers"),
        /// Keep data-loading workers alive between epochs.
        dataloader_persistent_workers: bool = false => Ignored("the encoded dataset is in memory: there are no loader workers"),
        /// Batches prefetched per worker.
        dataloader_prefetch_factor: Option<i64> = None => NotImplemented,
        /// Drop dataset columns the model does not take.
        remove_unused_columns: bool = true => NotImplemented,
        /// Names of the label inputs.
        label_names: Option<List<String>> = None => NotImplemented,
        /// Sampling of training batches.
        train_sampling_strategy: String = "random".into() => NotImplemented,
        /// Column with precomputed lengths.
        length_column_name: String = "length".into() => NotImplemented,
        /// DDP `find_unused_parameters`.
        ddp_find_unused_parameters: Option<bool> = None => NotImplemented,
        /// DDP bucket size in MB.
        ddp_bucket_cap_mb: Option<i64> = None => NotImplemented,
        /// DDP `broadcast_buffers`.
        ddp_broadcast_buffers: Option<bool> = None => NotImplemented,
        /// DDP static graph.
        ddp_static_graph: Option<bool> = None => NotImplemented,
        /// Distributed backend.
        ddp_backend: Option<String> = None => NotImplemented,
        /// Process-group timeout in seconds.
        ddp_timeout: i64 = 1800 => Ignored("lmf trains in one process: there is no process group"),
        /// FSDP options (a list, or a space-separated string).
        fsdp: Option<Union2<List<FsdpOption>, String>> = None => NotImplemented,
        /// FSDP settings (a mapping or a JSON file).
        fsdp_config: Option<Value> = None => NotImplemented,
        /// DeepSpeed settings (a mapping or a JSON file).
        deepspeed: Option<Value> = None => NotImplemented,
        /// Debug options (a list, or a space-separated string).
        debug: Union2<String, List<DebugOption>> = Union2::A(String::new()) => NotImplemented,
        /// Skip memory profiling in metrics.
        skip_memory_metrics: bool = true => NotImplemented,
        /// Train (informational for the scripts).
        do_train: bool = false => Implemented,
        /// Evaluate (informational for the scripts).
        do_eval: bool = false => Implemented,
        /// Predict (informational for the scripts).
        do_predict: bool = false => Implemented,
        /// Checkpoint folder to resume from.
        resume_from_checkpoint: Option<String> = None => Implemented,
        /// Deprecated warmup ratio (use `warmup_steps` below 1).
        warmup_ratio: Option<f64> = None => Implemented,
        /// Deprecated logging folder.
        logging_dir: Option<String> = None => Implemented,
        /// Local rank of the process (set by launchers).
        local_rank: i64 = -1 => NotImplemented,
        /// Sort-ish sampler by length.
        sortish_sampler: bool = false => NotImplemented,
        /// Generate for evaluation / prediction metrics.
        predict_with_generate: bool = false => Implemented,
        /// `max_length` when generating in evaluation.
        generation_max_length: Option<i64> = None => Implemented,
        /// `num_beams` when generating in evaluation.
        generation_num_beams: Option<i64> = None => Implemented,
        /// Generation config (a path, a model id or a config).
        generation_config: Option<Value> = None => NotImplemented,
        /// Ray workers.
        ray_num_workers: i64 = 1 => NotImplemented,
        /// Arguments of `ray.init`.
        ray_init_kwargs: Option<Value> = None => NotImplemented,
        /// Master address of the process group.
        master_addr: Option<String> = None => NotImplemented,
        /// Master port of the process group.
        master_port: Option<String> = None => NotImplemented,
        /// FP8 mixed precision.
        fp8: bool = false => NotImplemented,
        /// FP8 backend (`auto`, `torchao`, `te`, `msamp`).
        fp8_backend: String = "auto".into() => NotImplemented,
        /// FP8 all-gather under FSDP2.
        fp8_enable_fsdp_float8_all_gather: bool = false => NotImplemented,
        /// Collect torch profiler traces.
        enable_torch_profiler: bool = false => NotImplemented,
        /// Profiler trace folder (default `<output_dir>/profiler`).
        profiler_output_dir: Option<String> = None => NotImplemented,
        /// Profiler steps skipped per cycle.
        profiler_wait_steps: i64 = 1 => NotImplemented,
        /// Profiler warm-up steps per cycle.
        profiler_warmup_steps: i64 = 1 => NotImplemented,
        /// Profiler recorded steps per cycle.
        profiler_active_steps: i64 = 1 => NotImplemented,
        /// Profiler cycles (0 = continuous).
        profiler_repeat: i64 = 1 => NotImplemented,
        /// Record tensor shapes when profiling.
        profiler_record_shapes: bool = true => NotImplemented,
        /// Profile memory.
        profiler_profile_memory: bool = true => NotImplemented,
        /// Record stack traces when profiling.
        profiler_with_stack: bool = true => NotImplemented,
        /// Module name patterns timed with CUDA events.
        profile_modules: Option<String> = None => NotImplemented,
        /// Write into a non-empty `output_dir` (LLaMA-Factory refuses otherwise).
        overwrite_output_dir: bool = false => Implemented,
    }
}

/// Every `TrainingArguments` field in LLaMA-Factory's order (for `get_train_args` and tests).
pub fn training_fields() -> Vec<super::spec::FieldSpec> {
    TrainingArguments::fields()
}
