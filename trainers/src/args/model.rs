//! `ModelArguments` (LLaMA-Factory `hparams/model_args.py`): the base model, quantization,
//! processor, export, KTransformers, vLLM and SGLang parts, flattened in LLaMA-Factory's field
//! order, plus the four fields it derives itself.

use serde::Serialize;
use serde_json::Value;

use super::error::{ArgsError, Result};
use super::raw::RawValue;
use super::spec::lf_args;
use super::value::{lf_choice, ArgValue};

lf_choice! {
    /// How new special tokens are initialised (`init_special_tokens`).
    pub enum InitSpecialTokens {
        /// Random noise around the mean embedding.
        NoiseInit = "noise_init",
        /// From the embedding of a description.
        DescInit = "desc_init",
        /// From a description, plus noise.
        DescInitWithNoise = "desc_init_w_noise",
    }
}

lf_choice! {
    /// RoPE scaling strategy (`rope_scaling`, LF's `RopeScaling`).
    pub enum RopeScaling {
        /// Linear position interpolation.
        Linear = "linear",
        /// Dynamic NTK scaling.
        Dynamic = "dynamic",
        /// YaRN.
        Yarn = "yarn",
        /// Llama 3.1 frequency scaling.
        Llama3 = "llama3",
    }
}

lf_choice! {
    /// Attention implementation (`flash_attn`, LF's `AttentionFunction`).
    pub enum AttentionFunction {
        /// Let the backend pick.
        Auto = "auto",
        /// Eager attention.
        Disabled = "disabled",
        /// PyTorch scaled-dot-product attention.
        Sdpa = "sdpa",
        /// FlashAttention 2.
        Fa2 = "fa2",
        /// FlashAttention 3.
        Fa3 = "fa3",
    }
}

lf_choice! {
    /// Mixture-of-depths mode (`mixture_of_depths`).
    pub enum MixtureOfDepths {
        /// Convert a model to MoD.
        Convert = "convert",
        /// Load a MoD model.
        Load = "load",
    }
}

lf_choice! {
    /// Inference engine (`infer_backend`, LF's `EngineName`). lmf is its own engine and
    /// accepts only `huggingface`, the engine LLaMA-Factory runs in-process.
    pub enum EngineName {
        /// In-process generation (lmf's own).
        Huggingface = "huggingface",
        /// vLLM.
        Vllm = "vllm",
        /// SGLang.
        Sglang = "sglang",
    }
}

lf_choice! {
    /// Dtype of weights and activations at inference (`infer_dtype`).
    pub enum InferDtype {
        /// The checkpoint's own dtype (`torch_dtype` in config.json).
        Auto = "auto",
        /// IEEE half precision.
        Float16 = "float16",
        /// bfloat16.
        Bfloat16 = "bfloat16",
        /// Single precision.
        Float32 = "float32",
    }
}

lf_choice! {
    /// On-the-fly quantization method (`quantization_method`, LF's `QuantizationMethod`).
    pub enum QuantizationMethod {
        /// bitsandbytes.
        Bnb = "bnb",
        /// GPTQ.
        Gptq = "gptq",
        /// AWQ.
        Awq = "awq",
        /// AQLM.
        Aqlm = "aqlm",
        /// Quanto.
        Quanto = "quanto",
        /// EETQ.
        Eetq = "eetq",
        /// HQQ.
        Hqq = "hqq",
        /// MXFP4.
        Mxfp4 = "mxfp4",
        /// FP8.
        Fp8 = "fp8",
    }
}

lf_choice! {
    /// bitsandbytes 4-bit data type (`quantization_type`).
    pub enum QuantizationType {
        /// 4-bit float.
        Fp4 = "fp4",
        /// 4-bit NormalFloat.
        Nf4 = "nf4",
    }
}

lf_choice! {
    /// Device map for a quantized model (`quantization_device_map`).
    pub enum QuantizationDeviceMap {
        /// Let accelerate place the layers.
        Auto = "auto",
    }
}

lf_choice! {
    /// Device used when exporting (`export_device`).
    pub enum ExportDevice {
        /// On the CPU.
        Cpu = "cpu",
        /// On the available accelerators.
        Auto = "auto",
    }
}

lf_choice! {
    /// SGLang LoRA GEMM backend (`sglang_lora_backend`).
    pub enum SglangLoraBackend {
        /// Triton kernels.
        Triton = "triton",
        /// FlashInfer kernels.
        Flashinfer = "flashinfer",
    }
}

/// The name of a torch dtype (`compute_dtype`, which LLaMA-Factory derives from fp16/bf16).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct DtypeName(pub String);

impl ArgValue for DtypeName {
    fn kind() -> String {
        "dtype".into()
    }

    fn from_raw(raw: &RawValue) -> std::result::Result<Self, String> {
        String::from_raw(raw).map(DtypeName)
    }
}

const NOTE_REMOTE_CODE: &str =
    "lmf never runs code from a model repository: architectures are built in";
const NOTE_LOW_MEM: &str = "lmf always loads weights memory-mapped";
const NOTE_KV_CACHE: &str = "lmf always generates with a KV cache (the output is the same)";

lf_args! {
    /// Which model, adapters, tokenizer options, quantization, export and engine settings to
    /// use (LLaMA-Factory `ModelArguments`).
    pub struct ModelArguments {
        // --- BaseModelArguments ---
        /// Model folder or hub id (`org/name`); required.
        model_name_or_path: Option<String> = None => Implemented,
        /// Adapter folders or hub ids, comma-separated in the config.
        adapter_name_or_path: Option<Vec<String>> = None => Implemented,
        /// Folder holding the adapter weights to load.
        adapter_folder: Option<String> = None => NotImplemented,
        /// Hugging Face hub cache folder for downloads.
        cache_dir: Option<String> = None => Implemented,
        /// Use the fast (tokenizers-library) tokenizer; lmf has only that one.
        use_fast_tokenizer: bool = true => NotImplemented,
        /// Resize the vocabulary and embeddings to the tokenizer.
        resize_vocab: bool = false => NotImplemented,
        /// Split special tokens while tokenizing.
        split_special_tokens: bool = false => NotImplemented,
        /// Non-special tokens to add, comma-separated.
        add_tokens: Option<Vec<String>> = None => NotImplemented,
        /// Special tokens to add, comma-separated.
        add_special_tokens: Option<Vec<String>> = None => NotImplemented,
        /// YAML file with descriptions of new special tokens.
        new_special_tokens_config: Option<String> = None => NotImplemented,
        /// How new special tokens are initialised.
        init_special_tokens: InitSpecialTokens = InitSpecialTokens::NoiseInit => NotImplemented,
        /// Hub revision (branch, tag or commit) of the model.
        model_revision: String = "main".to_string() => Implemented,
        /// Memory-efficient model loading.
        low_cpu_mem_usage: bool = true => Ignored(NOTE_LOW_MEM),
        /// RoPE scaling strategy.
        rope_scaling: Option<RopeScaling> = None => NotImplemented,
        /// Attention implementation.
        flash_attn: AttentionFunction = AttentionFunction::Auto => NotImplemented,
        /// LongLoRA shift short attention.
        shift_attn: bool = false => NotImplemented,
        /// Mixture-of-depths conversion or loading.
        mixture_of_depths: Option<MixtureOfDepths> = None => NotImplemented,
        /// Unsloth optimisations for LoRA.
        use_unsloth: bool = false => NotImplemented,
        /// Unsloth's gradient checkpointing.
        use_unsloth_gc: bool = false => NotImplemented,
        /// Liger kernels.
        enable_liger_kernel: bool = false => NotImplemented,
        /// Coefficient of the MoE router auxiliary loss.
        moe_aux_loss_coef: Option<f64> = None => Implemented,
        /// Turn gradient checkpointing off.
        disable_gradient_checkpointing: bool = false => Implemented,
        /// Reentrant gradient checkpointing.
        use_reentrant_gc: bool = true => NotImplemented,
        /// Keep layer norms in fp32.
        upcast_layernorm: bool = false => NotImplemented,
        /// Compute the lm_head output in fp32.
        upcast_lmhead_output: bool = false => NotImplemented,
        /// Random initial weights instead of the checkpoint's.
        train_from_scratch: bool = false => Implemented,
        /// Inference engine; lmf is the engine and takes only `huggingface`.
        infer_backend: EngineName = EngineName::Huggingface => Implemented,
        /// Folder for offloaded weights.
        offload_folder: String = "offload".to_string() => NotImplemented,
        /// Use the KV cache in generation.
        use_kv_cache: bool = true => Ignored(NOTE_KV_CACHE),
        /// LLaMA-Factory v1 training kernels.
        use_v1_kernels: Option<bool> = Some(false) => NotImplemented,
        /// Dtype of weights and activations at inference.
        infer_dtype: InferDtype = InferDtype::Auto => Implemented,
        /// Hugging Face hub token.
        hf_hub_token: Option<String> = None => Implemented,
        /// ModelScope hub token.
        ms_hub_token: Option<String> = None => NotImplemented,
        /// Modelers hub token.
        om_hub_token: Option<String> = None => NotImplemented,
        /// Print every parameter's status (debugging).
        print_param_status: bool = false => NotImplemented,
        /// Trust code from the model repository.
        trust_remote_code: bool = false => Ignored(NOTE_REMOTE_CODE),
        // --- QuantizationArguments ---
        /// On-the-fly quantization method.
        quantization_method: QuantizationMethod = QuantizationMethod::Bnb => Implemented,
        /// Bits of on-the-fly quantization (4 or 8).
        quantization_bit: Option<i64> = None => Implemented,
        /// bitsandbytes 4-bit data type.
        quantization_type: QuantizationType = QuantizationType::Nf4 => Implemented,
        /// Double quantization in bitsandbytes 4-bit.
        double_quantization: bool = true => Implemented,
        /// Device map for a 4-bit model at inference.
        quantization_device_map: Option<QuantizationDeviceMap> = None => NotImplemented,
        // --- ProcessorArguments ---
        /// Maximum pixels of an image input.
        image_max_pixels: i64 = 768 * 768 => NotImplemented,
        /// Minimum pixels of an image input.
        image_min_pixels: i64 = 32 * 32 => NotImplemented,
        /// Gemma 3 pan-and-scan.
        image_do_pan_and_scan: bool = false => NotImplemented,
        /// InternVL crop to patches.
        crop_to_patches: bool = false => NotImplemented,
        /// Maximum pixels of a video frame.
        video_max_pixels: i64 = 256 * 256 => NotImplemented,
        /// Minimum pixels of a video frame.
        video_min_pixels: i64 = 16 * 16 => NotImplemented,
        /// Frames sampled per second of video.
        video_fps: f64 = 2.0 => NotImplemented,
        /// Maximum sampled frames per video.
        video_maxlen: i64 = 128 => NotImplemented,
        /// Use the audio track of videos.
        use_audio_in_video: bool = false => NotImplemented,
        /// Sampling rate of audio inputs.
        audio_sampling_rate: i64 = 16000 => NotImplemented,
        // --- ExportArguments ---
        /// Folder to write the exported model to.
        export_dir: Option<String> = None => Implemented,
        /// Shard size of the exported model, in GB.
        export_size: i64 = 5 => Implemented,
        /// Device used for exporting.
        export_device: ExportDevice = ExportDevice::Cpu => NotImplemented,
        /// Bits to quantize the exported model to.
        export_quantization_bit: Option<i64> = None => Implemented,
        /// Dataset used to quantize the exported model.
        export_quantization_dataset: Option<String> = None => Implemented,
        /// Samples used for export quantization.
        export_quantization_nsamples: i64 = 128 => Implemented,
        /// Maximum input length for export quantization.
        export_quantization_maxlen: i64 = 1024 => Implemented,
        /// Save `.bin` files instead of `.safetensors`.
        export_legacy_format: bool = false => NotImplemented,
        /// Hub repository to push the exported model to.
        export_hub_model_id: Option<String> = None => NotImplemented,
        // --- KTransformersArguments ---
        /// KTransformers AMX MoE backend.
        use_kt: bool = false => NotImplemented,
        /// Pre-quantized KTransformers expert weights.
        kt_weight_path: Option<String> = None => NotImplemented,
        /// Expert checkpoint for online conversion.
        kt_expert_checkpoint_path: Option<String> = None => NotImplemented,
        /// GPU-side LoRA experts.
        kt_use_lora_experts: Option<bool> = None => NotImplemented,
        /// Number of GPU-side LoRA experts.
        kt_lora_expert_num: Option<i64> = None => NotImplemented,
        /// Intermediate size of GPU-side LoRA experts.
        kt_lora_expert_intermediate_size: Option<i64> = None => NotImplemented,
        // --- VllmArguments ---
        /// vLLM maximum sequence length.
        vllm_maxlen: i64 = 4096 => NotImplemented,
        /// vLLM GPU memory fraction.
        vllm_gpu_util: f64 = 0.7 => NotImplemented,
        /// Disable CUDA graphs in vLLM.
        vllm_enforce_eager: bool = false => NotImplemented,
        /// vLLM maximum LoRA rank.
        vllm_max_lora_rank: i64 = 32 => NotImplemented,
        /// Extra vLLM engine config (mapping or JSON string).
        vllm_config: Option<Value> = None => NotImplemented,
        // --- SGLangArguments ---
        /// SGLang maximum sequence length.
        sglang_maxlen: i64 = 4096 => NotImplemented,
        /// SGLang memory fraction.
        sglang_mem_fraction: f64 = 0.7 => NotImplemented,
        /// SGLang tensor-parallel size.
        sglang_tp_size: i64 = -1 => NotImplemented,
        /// Extra SGLang engine config (mapping or JSON string).
        sglang_config: Option<Value> = None => NotImplemented,
        /// SGLang LoRA GEMM backend.
        sglang_lora_backend: SglangLoraBackend = SglangLoraBackend::Triton => NotImplemented,
        // --- derived by LLaMA-Factory (init=False) ---
        /// Compute dtype, derived from fp16/bf16 when training.
        compute_dtype: Option<DtypeName> = None => Derived,
        /// Device placement, derived by `get_infer_args` / `get_train_args`.
        device_map: Option<Value> = None => Derived,
        /// Maximum input length, derived from `cutoff_len`.
        model_max_length: Option<i64> = None => Derived,
        /// Block-diagonal attention, derived from `neat_packing`.
        block_diag_attn: bool = false => Derived,
    }
}

impl ModelArguments {
    /// LLaMA-Factory's `__post_init__` checks (lists are already split by their type).
    pub fn post_init(&mut self) -> Result<()> {
        if self.model_name_or_path.is_none() {
            return Err(ArgsError::Invalid(
                "`model_name_or_path` is required: a model folder or a hub id such as org/name"
                    .into(),
            ));
        }
        if self.image_max_pixels < self.image_min_pixels {
            return Err(invalid(
                "`image_max_pixels` cannot be smaller than `image_min_pixels`",
            ));
        }
        if self.video_max_pixels < self.video_min_pixels {
            return Err(invalid(
                "`video_max_pixels` cannot be smaller than `video_min_pixels`",
            ));
        }
        if self.export_quantization_bit.is_some() && self.export_quantization_dataset.is_none() {
            return Err(invalid(
                "`export_quantization_dataset` is necessary with `export_quantization_bit`",
            ));
        }
        self.quant_spec()?;
        Ok(())
    }

    /// The on-the-fly quantization these arguments ask for (`quantization_bit` with
    /// `quantization_method: bnb`), or `None`. `quantization_method: mxfp4` with
    /// `quantization_bit: 4` keeps an MXFP4 GPT-OSS checkpoint's experts 4-bit
    /// ([`lmf_models::QuantSpec::Mxfp4Experts`]; the load checks the checkpoint).
    pub fn quant_spec(&self) -> Result<Option<lmf_models::QuantSpec>> {
        use lmf_kernels::cpu::quant::FourBit;
        let Some(bits) = self.quantization_bit else {
            return Ok(None);
        };
        if self.quantization_method == QuantizationMethod::Mxfp4 {
            return match bits {
                4 => Ok(Some(lmf_models::QuantSpec::Mxfp4Experts)),
                b => Err(invalid(&format!(
                    "`quantization_method: mxfp4` keeps MXFP4 experts 4-bit and needs \
                     `quantization_bit: 4` (got `quantization_bit: {b}`)"
                ))),
            };
        }
        if self.quantization_method != QuantizationMethod::Bnb {
            return Err(invalid(&format!(
                "`quantization_method: {}` is not supported yet: lmf quantizes on the fly with \
                 bitsandbytes' formats only (`quantization_method: bnb`), or keeps MXFP4 \
                 experts 4-bit (`quantization_method: mxfp4`)",
                self.quantization_method
            )));
        }
        Ok(Some(match bits {
            4 => lmf_models::QuantSpec::Four {
                kind: match self.quantization_type {
                    QuantizationType::Nf4 => FourBit::Nf4,
                    QuantizationType::Fp4 => FourBit::Fp4,
                },
                double_quant: self.double_quantization,
            },
            8 => lmf_models::QuantSpec::Eight {
                threshold: lmf_models::quantize::LLM_INT8_THRESHOLD,
            },
            b => {
                return Err(invalid(&format!(
                    "Bitsandbytes only accepts 4-bit or 8-bit quantization. \
                     (`quantization_bit: {b}`)"
                )))
            }
        }))
    }

    /// `name_or_path` as `lmf_models::hub::resolve_model_dir` takes it: a hub id gets
    /// `@model_revision` when the revision is not `main` (LLaMA-Factory passes the same revision
    /// for the model and its adapters); an existing folder, or a name with its own `@`, is kept.
    pub fn with_revision(&self, name_or_path: &str) -> String {
        let keep = self.model_revision == "main"
            || name_or_path.contains('@')
            || std::path::Path::new(name_or_path).is_dir();
        if keep {
            name_or_path.to_string()
        } else {
            format!("{name_or_path}@{}", self.model_revision)
        }
    }

    /// The local folder of the model or adapter `name_or_path` ([`Self::with_revision`], the
    /// cache folder and token of these arguments; hub ids are downloaded).
    pub fn resolve_dir(&self, name_or_path: &str) -> lmf_models::Result<std::path::PathBuf> {
        lmf_models::hub::resolve_model_dir(
            &self.with_revision(name_or_path),
            self.cache_dir.as_deref().map(std::path::Path::new),
            self.hf_hub_token.as_deref(),
        )
    }

    /// The adapters to apply, in order (empty when none).
    pub fn adapters(&self) -> &[String] {
        self.adapter_name_or_path.as_deref().unwrap_or(&[])
    }
}

fn invalid(msg: &str) -> ArgsError {
    ArgsError::Invalid(msg.to_string())
}
