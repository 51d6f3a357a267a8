//! lmf models: Hugging Face `config.json` + safetensors loading, the architectures (Llama,
//! Mistral, Qwen2/3, Gemma, GPT-OSS, ...) built on `lmf-autograd` with HF tensor names,
//! adapters (LoRA, DoRA, PiSSA, freeze, LLaMA Pro), quantized linears and generation
//! (KV cache, sampling). Filled in by the models issue; knows nothing of datasets or YAML.
