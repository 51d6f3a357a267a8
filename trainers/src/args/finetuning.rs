//! `FinetuningArguments` (LLaMA-Factory `hparams/finetuning_args.py`): the freeze, OFT, LoRA,
//! RLHF, GaLore, APOLLO, BAdam and SwanLab parts, flattened in LLaMA-Factory's field order, then
//! the stage / method fields.

use super::error::{ArgsError, Result};
use super::spec::lf_args;
use super::value::lf_choice;

lf_choice! {
    /// Preference loss of DPO-family training (`pref_loss`).
    pub enum PrefLoss {
        /// DPO.
        Sigmoid = "sigmoid",
        /// SLiC hinge loss.
        Hinge = "hinge",
        /// IPO.
        Ipo = "ipo",
        /// Paired KTO.
        KtoPair = "kto_pair",
        /// ORPO (no reference model).
        Orpo = "orpo",
        /// SimPO (no reference model).
        Simpo = "simpo",
    }
}

lf_choice! {
    /// Kind of reward model in PPO (`reward_model_type`).
    pub enum RewardModelType {
        /// A LoRA adapter on the policy.
        Lora = "lora",
        /// A separate full model.
        Full = "full",
        /// A remote API.
        Api = "api",
    }
}

lf_choice! {
    /// GaLore projection type (`galore_proj_type`).
    pub enum GaloreProjType {
        /// Standard.
        Std = "std",
        /// Reverse standard.
        ReverseStd = "reverse_std",
        /// Right projection.
        Right = "right",
        /// Left projection.
        Left = "left",
        /// Full projection.
        Full = "full",
    }
}

lf_choice! {
    /// APOLLO low-rank projection algorithm (`apollo_proj`).
    pub enum ApolloProj {
        /// SVD.
        Svd = "svd",
        /// Random.
        Random = "random",
    }
}

lf_choice! {
    /// APOLLO projection type (`apollo_proj_type`).
    pub enum ApolloProjType {
        /// Standard.
        Std = "std",
        /// Right projection.
        Right = "right",
        /// Left projection.
        Left = "left",
    }
}

lf_choice! {
    /// APOLLO scaling granularity (`apollo_scale_type`).
    pub enum ApolloScaleType {
        /// Per channel.
        Channel = "channel",
        /// Per tensor.
        Tensor = "tensor",
    }
}

lf_choice! {
    /// BAdam mode (`badam_mode`).
    pub enum BadamMode {
        /// Layer-wise blocks.
        Layer = "layer",
        /// Ratio-wise updates.
        Ratio = "ratio",
    }
}

lf_choice! {
    /// BAdam block switching order (`badam_switch_mode`).
    pub enum BadamSwitchMode {
        /// First to last.
        Ascending = "ascending",
        /// Last to first.
        Descending = "descending",
        /// Random order.
        Random = "random",
        /// Always the same block.
        Fixed = "fixed",
    }
}

lf_choice! {
    /// BAdam mask layout (`badam_mask_mode`).
    pub enum BadamMaskMode {
        /// Trainable parameters are adjacent.
        Adjacent = "adjacent",
        /// Trainable parameters are scattered.
        Scatter = "scatter",
    }
}

lf_choice! {
    /// SwanLab mode (`swanlab_mode`).
    pub enum SwanlabMode {
        /// Cloud logging.
        Cloud = "cloud",
        /// Local logging.
        Local = "local",
    }
}

lf_choice! {
    /// Training stage (`stage`).
    pub enum Stage {
        /// Pre-training.
        Pt = "pt",
        /// Supervised fine-tuning.
        Sft = "sft",
        /// Reward modelling.
        Rm = "rm",
        /// PPO.
        Ppo = "ppo",
        /// DPO family.
        Dpo = "dpo",
        /// KTO.
        Kto = "kto",
    }
}

lf_choice! {
    /// Fine-tuning method (`finetuning_type`).
    pub enum FinetuningType {
        /// LoRA family adapters.
        Lora = "lora",
        /// Orthogonal fine-tuning adapters.
        Oft = "oft",
        /// Some layers trainable.
        Freeze = "freeze",
        /// Every parameter trainable.
        Full = "full",
    }
}

fn all() -> Vec<String> {
    vec!["all".to_string()]
}

lf_args! {
    /// Which fine-tuning method, stage and optimiser extras to use (LLaMA-Factory
    /// `FinetuningArguments`).
    pub struct FinetuningArguments {
        // --- FreezeArguments ---
        /// Trainable layers: positive = last n, negative = first n.
        freeze_trainable_layers: i64 = 2 => Implemented,
        /// Trainable modules of those layers, comma-separated (`all`).
        freeze_trainable_modules: Vec<String> = all() => Implemented,
        /// Extra trainable modules outside the layers, comma-separated.
        freeze_extra_modules: Option<Vec<String>> = None => Implemented,
        // --- OFTArguments (shares additional_target and create_new_adapter with LoRA) ---
        /// Extra trainable, saved modules (PEFT modules_to_save), comma-separated.
        additional_target: Option<Vec<String>> = None => Implemented,
        /// OFT module dropout.
        module_dropout: f64 = 0.0 => NotImplemented,
        /// OFT rank.
        oft_rank: i64 = 0 => NotImplemented,
        /// OFT block size.
        oft_block_size: i64 = 32 => NotImplemented,
        /// OFT target modules, comma-separated (`all`).
        oft_target: Vec<String> = all() => NotImplemented,
        /// Create a new adapter on top of the loaded ones.
        create_new_adapter: bool = false => Implemented,
        // --- LoraArguments ---
        /// LoRA alpha (default: 2 × rank).
        lora_alpha: Option<i64> = None => Implemented,
        /// LoRA dropout.
        lora_dropout: f64 = 0.0 => Implemented,
        /// LoRA rank.
        lora_rank: i64 = 8 => Implemented,
        /// LoRA target modules, comma-separated (`all` = every linear but the head).
        lora_target: Vec<String> = all() => Implemented,
        /// LoRA+ learning-rate ratio lr_B / lr_A.
        loraplus_lr_ratio: Option<f64> = None => Implemented,
        /// LoRA+ learning rate of embedding adapters.
        loraplus_lr_embedding: f64 = 1e-6 => Implemented,
        /// Rank-stabilised LoRA scaling.
        use_rslora: bool = false => Implemented,
        /// DoRA.
        use_dora: bool = false => Implemented,
        /// PiSSA initialisation.
        pissa_init: bool = false => Implemented,
        /// PiSSA fast-SVD iterations (-1 = full SVD).
        pissa_iter: i64 = 16 => Implemented,
        /// Convert a PiSSA adapter to plain LoRA when saving.
        pissa_convert: bool = false => Implemented,
        // --- RLHFArguments ---
        /// Beta of the preference loss.
        pref_beta: f64 = 0.1 => Implemented,
        /// SFT loss coefficient in DPO.
        pref_ftx: f64 = 0.0 => Implemented,
        /// BCO coefficient in DPO.
        pref_bco_weight: f64 = 0.0 => Implemented,
        /// Preference loss.
        pref_loss: PrefLoss = PrefLoss::Sigmoid => Implemented,
        /// cDPO label smoothing.
        dpo_label_smoothing: f64 = 0.0 => Implemented,
        /// KTO weight of desirable examples.
        kto_chosen_weight: f64 = 1.0 => Implemented,
        /// KTO weight of undesirable examples.
        kto_rejected_weight: f64 = 1.0 => Implemented,
        /// SimPO target reward margin.
        simpo_gamma: f64 = 0.5 => Implemented,
        /// PPO mini-batches per experience buffer.
        ppo_buffer_size: i64 = 1 => Implemented,
        /// PPO epochs per optimisation step.
        ppo_epochs: i64 = 4 => Implemented,
        /// PPO score normalisation.
        ppo_score_norm: bool = false => Implemented,
        /// PPO adaptive-KL target.
        ppo_target: f64 = 6.0 => Implemented,
        /// Whiten PPO rewards.
        ppo_whiten_rewards: bool = false => Implemented,
        /// Reference model for PPO / DPO.
        ref_model: Option<String> = None => Implemented,
        /// Adapters of the reference model.
        ref_model_adapters: Option<String> = None => Implemented,
        /// Quantization bits of the reference model.
        ref_model_quantization_bit: Option<i64> = None => NotImplemented,
        /// Reward model for PPO.
        reward_model: Option<String> = None => Implemented,
        /// Adapters of the reward model.
        reward_model_adapters: Option<String> = None => Implemented,
        /// Quantization bits of the reward model.
        reward_model_quantization_bit: Option<i64> = None => NotImplemented,
        /// Kind of reward model.
        reward_model_type: RewardModelType = RewardModelType::Lora => Implemented,
        /// LD-DPO alpha.
        ld_alpha: Option<f64> = None => NotImplemented,
        // --- GaloreArguments ---
        /// GaLore.
        use_galore: bool = false => Implemented,
        /// GaLore target modules, comma-separated.
        galore_target: Vec<String> = all() => Implemented,
        /// GaLore rank.
        galore_rank: i64 = 16 => Implemented,
        /// GaLore projection update interval.
        galore_update_interval: i64 = 200 => Implemented,
        /// GaLore scale.
        galore_scale: f64 = 2.0 => Implemented,
        /// GaLore projection type.
        galore_proj_type: GaloreProjType = GaloreProjType::Std => Implemented,
        /// Layer-wise GaLore updates.
        galore_layerwise: bool = false => Implemented,
        // --- ApolloArguments ---
        /// APOLLO optimiser.
        use_apollo: bool = false => Implemented,
        /// APOLLO target modules, comma-separated.
        apollo_target: Vec<String> = all() => Implemented,
        /// APOLLO rank.
        apollo_rank: i64 = 16 => Implemented,
        /// APOLLO projection update interval.
        apollo_update_interval: i64 = 200 => Implemented,
        /// APOLLO scale.
        apollo_scale: f64 = 32.0 => Implemented,
        /// APOLLO projection algorithm.
        apollo_proj: ApolloProj = ApolloProj::Random => Implemented,
        /// APOLLO projection type.
        apollo_proj_type: ApolloProjType = ApolloProjType::Std => Implemented,
        /// APOLLO scaling granularity.
        apollo_scale_type: ApolloScaleType = ApolloScaleType::Channel => Implemented,
        /// Layer-wise APOLLO updates.
        apollo_layerwise: bool = false => Implemented,
        /// APOLLO norm-growth limiter before scaling.
        apollo_scale_front: bool = false => Implemented,
        // --- BAdamArgument ---
        /// BAdam optimiser.
        use_badam: bool = false => Implemented,
        /// BAdam mode.
        badam_mode: BadamMode = BadamMode::Layer => Implemented,
        /// First block of layer-wise BAdam.
        badam_start_block: Option<i64> = None => Implemented,
        /// Block switching order of layer-wise BAdam.
        badam_switch_mode: Option<BadamSwitchMode> = Some(BadamSwitchMode::Ascending) => Implemented,
        /// Steps between block switches (-1 = never).
        badam_switch_interval: Option<i64> = Some(50) => Implemented,
        /// Update ratio of ratio-wise BAdam.
        badam_update_ratio: f64 = 0.05 => Implemented,
        /// BAdam mask layout.
        badam_mask_mode: BadamMaskMode = BadamMaskMode::Adjacent => Implemented,
        /// BAdam verbosity.
        badam_verbose: i64 = 0 => Implemented,
        // --- SwanLabArguments ---
        /// SwanLab experiment tracking.
        use_swanlab: bool = false => NotImplemented,
        /// SwanLab project.
        swanlab_project: Option<String> = Some("llamafactory".to_string()) => NotImplemented,
        /// SwanLab workspace.
        swanlab_workspace: Option<String> = None => NotImplemented,
        /// SwanLab run name.
        swanlab_run_name: Option<String> = None => NotImplemented,
        /// SwanLab mode.
        swanlab_mode: SwanlabMode = SwanlabMode::Cloud => NotImplemented,
        /// SwanLab API key.
        swanlab_api_key: Option<String> = None => NotImplemented,
        /// SwanLab log folder.
        swanlab_logdir: Option<String> = None => NotImplemented,
        /// SwanLab Lark webhook URL.
        swanlab_lark_webhook_url: Option<String> = None => NotImplemented,
        /// SwanLab Lark secret.
        swanlab_lark_secret: Option<String> = None => NotImplemented,
        // --- FinetuningArguments' own ---
        /// Train purely in bf16 (no fp32 master weights). LLaMA-Factory refuses it on a CPU
        /// (`This device does not support `pure_bf16`.`); lmf too, and on its GPU path it is
        /// not built yet.
        pure_bf16: bool = false => Implemented,
        /// Training stage (chat needs `sft`: a generating model).
        stage: Stage = Stage::Sft => Implemented,
        /// Fine-tuning method (adapters need `lora`).
        finetuning_type: FinetuningType = FinetuningType::Lora => Implemented,
        /// LLaMA Pro: train only the expanded blocks.
        use_llama_pro: bool = false => Implemented,
        /// Adam-mini optimiser.
        use_adam_mini: bool = false => NotImplemented,
        /// Megatron Core Adapter training.
        use_mca: bool = false => NotImplemented,
        /// HyperParallel backend.
        use_hyper_parallel: bool = false => NotImplemented,
        /// HyperParallel strategy JSON file.
        hyper_parallel_args: Option<String> = None => NotImplemented,
        /// Muon optimiser.
        use_muon: bool = false => NotImplemented,
        /// DFT loss.
        use_dft_loss: bool = false => NotImplemented,
        /// ASFT loss.
        use_asft_loss: bool = false => NotImplemented,
        /// ASFT alpha.
        asft_alpha: f64 = 0.1 => NotImplemented,
        /// EAFT loss.
        use_eaft_loss: bool = false => NotImplemented,
        /// EAFT alpha.
        eaft_alpha: f64 = 1.0 => NotImplemented,
        /// Freeze the vision tower of a multimodal model.
        freeze_vision_tower: bool = true => NotImplemented,
        /// Freeze the multimodal projector.
        freeze_multi_modal_projector: bool = true => NotImplemented,
        /// Freeze the language model of a multimodal model.
        freeze_language_model: bool = false => NotImplemented,
        /// Token-level accuracy at evaluation.
        compute_accuracy: bool = false => NotImplemented,
        /// Keep the training set in order.
        disable_shuffling: bool = false => Implemented,
        /// Stop after this many evaluations without improvement.
        early_stopping_steps: Option<i64> = None => NotImplemented,
        /// Save loss curves as PNG.
        plot_loss: bool = false => Implemented,
        /// Report effective tokens per second.
        include_effective_tokens_per_second: bool = false => NotImplemented,
    }
}

impl FinetuningArguments {
    /// LLaMA-Factory's `__post_init__`: `lora_alpha` defaults to 2 × `lora_rank`, then its checks.
    pub fn post_init(&mut self) -> Result<()> {
        // `self.lora_alpha or self.lora_rank * 2`: 0 counts as unset too.
        if self.lora_alpha.unwrap_or(0) == 0 {
            self.lora_alpha = Some(self.lora_rank * 2);
        }
        for (key, bits) in [
            (
                "ref_model_quantization_bit",
                self.ref_model_quantization_bit,
            ),
            (
                "reward_model_quantization_bit",
                self.reward_model_quantization_bit,
            ),
        ] {
            if !matches!(bits, None | Some(4) | Some(8)) {
                return Err(ArgsError::Invalid(format!(
                    "`{key}` must be 4 or 8 (got {})",
                    bits.unwrap_or_default()
                )));
            }
        }
        let lora = self.finetuning_type == FinetuningType::Lora;
        if self.stage == Stage::Ppo {
            if self.reward_model.is_none() {
                return Err(invalid("`reward_model` is necessary for PPO training"));
            }
            if self.reward_model_type == RewardModelType::Lora && !lora {
                return Err(invalid(
                    "`reward_model_type` cannot be lora for Freeze/Full PPO training",
                ));
            }
        }
        if self.stage == Stage::Dpo
            && self.pref_loss != PrefLoss::Sigmoid
            && self.dpo_label_smoothing > 1e-6
        {
            return Err(invalid(
                "`dpo_label_smoothing` is only valid for the sigmoid loss",
            ));
        }
        if self.use_llama_pro && self.finetuning_type == FinetuningType::Full {
            return Err(invalid(
                "`use_llama_pro` is only valid for Freeze or LoRA training",
            ));
        }
        if lora && (self.use_galore || self.use_apollo || self.use_badam) {
            return Err(invalid(
                "cannot use LoRA with GaLore, APOLLO or BAdam together",
            ));
        }
        if u8::from(self.use_galore) + u8::from(self.use_apollo) + u8::from(self.use_badam) > 1 {
            return Err(invalid("cannot use GaLore, APOLLO or BAdam together"));
        }
        if self.pissa_init
            && (matches!(self.stage, Stage::Ppo | Stage::Kto) || self.use_ref_model())
        {
            return Err(invalid("cannot use PiSSA for the current training stage"));
        }
        if !lora {
            let lora_only = [
                ("loraplus_lr_ratio", self.loraplus_lr_ratio.is_some()),
                ("use_rslora", self.use_rslora),
                ("use_dora", self.use_dora),
                ("pissa_init", self.pissa_init),
            ];
            if let Some((key, _)) = lora_only.iter().find(|(_, set)| *set) {
                return Err(ArgsError::Invalid(format!(
                    "`{key}` is only valid for LoRA training"
                )));
            }
        }
        Ok(())
    }

    /// Whether the stage needs a reference model (DPO with a loss other than ORPO / SimPO).
    pub fn use_ref_model(&self) -> bool {
        self.stage == Stage::Dpo && !matches!(self.pref_loss, PrefLoss::Orpo | PrefLoss::Simpo)
    }
}

fn invalid(msg: &str) -> ArgsError {
    ArgsError::Invalid(msg.to_string())
}
