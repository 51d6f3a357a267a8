//! torch's CPU default generator after `torch.manual_seed(seed)`, with the f32 `uniform_` and
//! `normal_` it serves, and transformers 5.6's `AutoModelForCausalLM.from_config(config)` init on
//! top of them: the weights LLaMA-Factory's `train_from_scratch: true` starts from (it calls
//! `transformers.set_seed(seed)` at the end of `get_train_args`, and nothing draws from torch's
//! generator before `from_config`). Bit for bit for llama, mistral, qwen2, qwen3 and gemma in
//! float32; checked by `trainers/tests/torch_init.rs` against
//! `tests/fixtures/hf/train/scratch_init/cases.json` (`make_scratch_init.py`).
//!
//! The generator (`CPUGeneratorImpl`): mt19937 seeded with the seed's low 32 bits, plus the
//! cached second half of the last scalar Box–Muller pair (`next_double_normal_sample`, cleared by
//! `manual_seed`). Draw counts on f32 tensors of `n` values (measured against the raw stream by
//! the fixture script):
//! - `uniform_(a, b)`: one 32-bit draw per value; `x = (r & (2²⁴ − 1)) · 2⁻²⁴`, then
//!   `fma(x, b − a, a)` in f32 with `a`, `b` rounded to f32 first
//!   (`uniform_real_distribution<float>`; the compiler fuses `x * (to - from) + from`).
//! - `normal_(mean, std)`, `n ≥ 16` (contiguous): the AVX2 `normal_fill` of
//!   [`super::torch_randn`]: `n` draws, plus 16 more when `n % 16 != 0`; values
//!   `fma(z, std, mean)` in f32. The cached scalar normal is left alone.
//! - `normal_(mean, std)`, `n < 16`: per value one double standard normal from
//!   `normal_distribution<double>`: the cached one if present, else two 64-bit draws (four 32-bit,
//!   high word first) `u1`, `u2` = `(r & (2⁵³ − 1)) · 2⁻⁵³`, `r = √(−2·log1p(−u2))`,
//!   `θ = 2π·u1`, return `r·cos θ` and cache `r·sin θ`; the value is `(z·std + mean) as f32` in
//!   double. So `n` odd/even values take `4·⌈(n − c)/2⌉` draws where `c` is 1 when a cached
//!   sample was waiting.
//!
//! The init order (`modeling_utils.py` `post_init` → `init_weights` → `initialize_weights`, a
//! post-order walk that skips modules already `_is_hf_initialized`):
//! 1. `XModel.__init__`: `nn.Embedding(V, H, pad)` draws `normal_(0, 1)` on V·H values; then per
//!    layer, in order, `q_proj`, `k_proj`, `v_proj`, `o_proj`, `gate_proj`, `up_proj`,
//!    `down_proj`: `nn.Linear` draws `kaiming_uniform_(a=√5)` on its weight, then `uniform_` on its
//!    bias if it has one. Norms are `torch.ones` (Gemma: `torch.zeros`), rotary buffers
//!    deterministic: no draws.
//! 2. `XModel.post_init`: embedding `normal_(0, std)`, then row `pad_token_id` zeroed; each
//!    layer's seven Linear weights `normal_(0, std)` in the same order, biases zeroed; norms ones
//!    (Gemma zeros). `std = initializer_range or 0.02`.
//! 3. `lm_head = nn.Linear(H, V, bias=False)`: `kaiming_uniform_` on V·H values.
//! 4. `XForCausalLM.post_init`: only `lm_head` is left: `normal_(0, std)`; then `tie_weights`
//!    makes `lm_head.weight` the embedding when `tie_word_embeddings` (its draws are still taken).
//!
//! Which biases exist follows each modeling file, not the config keys alone: llama `q/k/v/o` with
//! `attention_bias`, MLP with `mlp_bias`; mistral none (it ignores both keys); qwen2 `q/k/v`
//! always, `o_proj` and MLP never; qwen3 and gemma `q/k/v/o` with `attention_bias`, MLP never.
//! qwen3 adds `q_norm`/`k_norm` (ones, `head_dim`) after `o_proj`.

use std::f64::consts::PI;

use super::torch_randn::normal_fill;
use crate::data::numpy_rng::LegacyRng;

/// `(2²⁴ − 1)`: the bits of one 32-bit draw an f32 uniform keeps.
const MASK24: u32 = (1 << 24) - 1;
/// `(2⁵³ − 1)`: the bits of one 64-bit draw a double uniform keeps.
const MASK53: u64 = (1 << 53) - 1;

/// The model types [`hf_init_weights`] reproduces (checked against transformers 5.6.0).
pub const SUPPORTED_MODEL_TYPES: &[&str] = &["llama", "mistral", "qwen2", "qwen3", "gemma"];

/// torch's CPU default generator (`CPUGeneratorImpl`) after `torch.manual_seed(seed)`.
#[derive(Clone, Debug)]
pub struct TorchGenerator {
    mt: LegacyRng,
    /// `next_double_normal_sample_`: the `r·sin θ` of the last scalar Box–Muller pair.
    next_double_normal: Option<f64>,
}

impl TorchGenerator {
    /// `torch.manual_seed(seed)`: mt19937 from the seed's low 32 bits, no cached normal.
    pub fn manual_seed(seed: u64) -> TorchGenerator {
        TorchGenerator {
            mt: LegacyRng::new(seed),
            next_double_normal: None,
        }
    }

    /// `random()`: one 32-bit draw.
    pub fn random(&mut self) -> u32 {
        self.mt.next_u32()
    }

    /// `random64()`: two 32-bit draws, the first as the high half.
    pub fn random64(&mut self) -> u64 {
        self.mt.next_u64()
    }

    /// Throws `draws` 32-bit draws away.
    pub fn advance(&mut self, draws: u64) {
        for _ in 0..draws {
            self.mt.next_u32();
        }
    }

    /// `torch.empty(n).uniform_(from, to)` (f32): `fma(x, to − from, from)` in f32, one draw each.
    pub fn uniform_(&mut self, n: usize, from: f64, to: f64) -> Vec<f32> {
        let (from, to) = (from as f32, to as f32);
        let range = to - from;
        (0..n)
            .map(|_| {
                let x = (self.random() & MASK24) as f32 * (1.0 / 16_777_216.0);
                x.mul_add(range, from)
            })
            .collect()
    }

    /// Advances the stream as `uniform_` on `n` f32 values does (`n` draws), for values that are
    /// overwritten anyway.
    pub fn skip_uniform_(&mut self, n: usize) {
        self.advance(n as u64);
    }

    /// `torch.empty(n).normal_(mean, std)` (f32, contiguous).
    pub fn normal_(&mut self, n: usize, mean: f64, std: f64) -> Vec<f32> {
        if n >= 16 {
            return normal_fill(&mut self.mt, n, mean as f32, std as f32);
        }
        (0..n)
            .map(|_| (self.scalar_normal() * std + mean) as f32)
            .collect()
    }

    /// Advances the stream (and the cached scalar normal) as `normal_` on `n` f32 values does.
    pub fn skip_normal_(&mut self, n: usize) {
        if n >= 16 {
            let tail = if n.is_multiple_of(16) { 0 } else { 16 };
            self.advance(n as u64 + tail);
        } else {
            for _ in 0..n {
                self.scalar_normal();
            }
        }
    }

    /// One standard normal of `at::normal_distribution<double>`, using and refilling the cache.
    fn scalar_normal(&mut self) -> f64 {
        if let Some(z) = self.next_double_normal.take() {
            return z;
        }
        let u1 = self.uniform_f64();
        let u2 = self.uniform_f64();
        let r = (-2.0 * (-u2).ln_1p()).sqrt();
        let theta = 2.0 * PI * u1;
        self.next_double_normal = Some(r * theta.sin());
        r * theta.cos()
    }

    /// `uniform_real_distribution<double>(0, 1)`: `(r & (2⁵³ − 1)) · 2⁻⁵³` of one 64-bit draw.
    fn uniform_f64(&mut self) -> f64 {
        (self.random64() & MASK53) as f64 * (1.0 / 9_007_199_254_740_992.0)
    }

    /// `nn.Linear(in_features, out_features, bias)`'s `reset_parameters`: the weight
    /// (`[out, in]`, `kaiming_uniform_(a=√5)`) and the bias (`uniform_(±1/√in)`).
    pub fn linear_reset_(
        &mut self,
        out_features: usize,
        in_features: usize,
        bias: bool,
    ) -> (Vec<f32>, Option<Vec<f32>>) {
        let n = out_features * in_features;
        let w = if n == 0 {
            Vec::new() // kaiming_uniform_ on a zero-element tensor is a no-op
        } else {
            let bound = kaiming_uniform_bound(in_features, 5f64.sqrt());
            self.uniform_(n, -bound, bound)
        };
        let b = bias.then(|| {
            let bound = if in_features > 0 {
                1.0 / (in_features as f64).sqrt()
            } else {
                0.0
            };
            self.uniform_(out_features, -bound, bound)
        });
        (w, b)
    }

    /// Advances the stream as [`TorchGenerator::linear_reset_`] does (`out·in` draws, plus `out`
    /// with a bias).
    pub fn skip_linear_reset_(&mut self, out_features: usize, in_features: usize, bias: bool) {
        self.skip_uniform_(out_features * in_features);
        if bias {
            self.skip_uniform_(out_features);
        }
    }
}

/// `nn.init.kaiming_uniform_`'s bound for `fan_in` and leaky-ReLU slope `a`, in Python's double
/// arithmetic: `gain = √(2 / (1 + a²))`, `std = gain / √fan_in`, `bound = √3 · std`.
pub fn kaiming_uniform_bound(fan_in: usize, a: f64) -> f64 {
    let gain = (2.0 / (1.0 + a * a)).sqrt();
    let std = gain / (fan_in as f64).sqrt();
    3f64.sqrt() * std
}

/// What [`hf_init_weights`] needs of a model's `config.json`, with transformers' defaults
/// resolved (`head_dim`: llama/mistral/qwen2 `hidden_size / num_attention_heads`, qwen3 128,
/// gemma 256; `pad_token_id`: gemma 0, others none; `tie_word_embeddings`: gemma true, others
/// false; `initializer_range`: 0.02).
#[derive(Clone, Debug, PartialEq)]
pub struct HfInitConfig {
    /// `model_type`: one of [`SUPPORTED_MODEL_TYPES`].
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    /// `initializer_range` (0 means 0.02, as `initializer_range or 0.02` does).
    pub initializer_range: f64,
    /// `pad_token_id`: the embedding row zeroed (negative counts from the end, as `nn.Embedding`).
    pub pad_token_id: Option<i64>,
    pub tie_word_embeddings: bool,
    /// `attention_bias` (ignored by mistral and qwen2, as their modeling files do).
    pub attention_bias: bool,
    /// `mlp_bias` (llama only; the others ignore it).
    pub mlp_bias: bool,
    /// The dtype the model is built in (`config.dtype`): only `None` / `"float32"` are
    /// reproduced (half-precision tensors draw and round differently).
    pub dtype: Option<String>,
}

/// Which optional tensors a model type builds, and how its RMSNorm weights start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HfLayout {
    /// Bias on `q_proj`, `k_proj`, `v_proj`.
    pub qkv_bias: bool,
    /// Bias on `o_proj`.
    pub o_bias: bool,
    /// Bias on `gate_proj`, `up_proj`, `down_proj`.
    pub mlp_bias: bool,
    /// `q_norm` / `k_norm` (qwen3).
    pub qk_norm: bool,
    /// RMSNorm weights start at 1 (`false`: at 0, Gemma's `(1 + w)` norms).
    pub norm_ones: bool,
}

impl HfInitConfig {
    /// The tensors transformers 5.6's modeling file for `model_type` builds from this config.
    pub fn layout(&self) -> Result<HfLayout, String> {
        let ab = self.attention_bias;
        let layout = |qkv_bias, o_bias, mlp_bias, qk_norm, norm_ones| HfLayout {
            qkv_bias,
            o_bias,
            mlp_bias,
            qk_norm,
            norm_ones,
        };
        match self.model_type.as_str() {
            "llama" => Ok(layout(ab, ab, self.mlp_bias, false, true)),
            "mistral" => Ok(layout(false, false, false, false, true)),
            "qwen2" => Ok(layout(true, false, false, false, true)),
            "qwen3" => Ok(layout(ab, ab, false, true, true)),
            "gemma" => Ok(layout(ab, ab, false, false, false)),
            other => Err(format!(
                "train_from_scratch: weight init of model_type `{other}` is not reproduced \
                 (supported: {})",
                SUPPORTED_MODEL_TYPES.join(", ")
            )),
        }
    }

    /// `initializer_range or 0.02`, refusing what `normal_` refuses.
    fn std(&self) -> Result<f64, String> {
        let r = self.initializer_range;
        if !r.is_finite() || r < 0.0 {
            return Err(format!(
                "train_from_scratch: initializer_range must be a finite number >= 0, got {r}"
            ));
        }
        Ok(if r == 0.0 { 0.02 } else { r })
    }

    /// `nn.Embedding`'s `padding_idx` (negative ids count from the end), checked against V.
    fn padding_idx(&self) -> Result<Option<usize>, String> {
        let Some(p) = self.pad_token_id else {
            return Ok(None);
        };
        let v = self.vocab_size as i64;
        let idx = if p < 0 { p + v } else { p };
        if !(0..v).contains(&idx) {
            return Err(format!(
                "train_from_scratch: pad_token_id {p} is outside the vocabulary of {v} \
                 (nn.Embedding: padding_idx must be within num_embeddings)"
            ));
        }
        Ok(Some(idx as usize))
    }

    fn check(&self) -> Result<(), String> {
        match self.dtype.as_deref() {
            None | Some("float32") => {}
            Some(other) => {
                return Err(format!(
                    "train_from_scratch: the config's dtype `{other}` builds the model in that \
                     dtype, whose init draws and rounds differently; only float32 is reproduced"
                ))
            }
        }
        let sizes = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
        ];
        if let Some((key, _)) = sizes.iter().find(|(_, v)| *v == 0) {
            return Err(format!(
                "train_from_scratch: config `{key}` must be positive"
            ));
        }
        // every tensor's element count must fit (checked once on the largest products)
        let largest = [
            self.vocab_size.checked_mul(self.hidden_size),
            self.intermediate_size.checked_mul(self.hidden_size),
            self.num_attention_heads
                .checked_mul(self.head_dim)
                .and_then(|q| q.checked_mul(self.hidden_size)),
            self.num_key_value_heads
                .checked_mul(self.head_dim)
                .and_then(|q| q.checked_mul(self.hidden_size)),
        ];
        if largest.iter().any(Option::is_none) {
            return Err("train_from_scratch: config sizes overflow".into());
        }
        Ok(())
    }
}

/// One state-dict entry: HF name, shape, f32 values (row-major).
pub type HfTensor = (String, Vec<usize>, Vec<f32>);

/// One `nn.Linear` of a decoder layer: name under `model.layers.{i}.`, out, in, has a bias.
struct LinearSpec {
    name: &'static str,
    out: usize,
    inp: usize,
    bias: bool,
}

/// A layer's Linear modules in construction (= init = state-dict) order.
fn layer_linears(cfg: &HfInitConfig, lay: &HfLayout) -> Vec<LinearSpec> {
    let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
    let q = cfg.num_attention_heads * cfg.head_dim;
    let kv = cfg.num_key_value_heads * cfg.head_dim;
    let spec = |name, out, inp, bias| LinearSpec {
        name,
        out,
        inp,
        bias,
    };
    vec![
        spec("self_attn.q_proj", q, h, lay.qkv_bias),
        spec("self_attn.k_proj", kv, h, lay.qkv_bias),
        spec("self_attn.v_proj", kv, h, lay.qkv_bias),
        spec("self_attn.o_proj", h, q, lay.o_bias),
        spec("mlp.gate_proj", i, h, lay.mlp_bias),
        spec("mlp.up_proj", i, h, lay.mlp_bias),
        spec("mlp.down_proj", h, i, lay.mlp_bias),
    ]
}

/// An RMSNorm weight of `n` values: ones, or zeros for Gemma.
fn norm(name: String, n: usize, lay: &HfLayout) -> HfTensor {
    let v = if lay.norm_ones { 1.0 } else { 0.0 };
    (name, vec![n], vec![v; n])
}

/// `torch.manual_seed(seed); AutoModelForCausalLM.from_config(config).state_dict()` in float32,
/// without `lm_head.weight` when the embeddings are tied (it is `model.embed_tokens.weight`), in
/// the state dict's order.
pub fn hf_init_weights(cfg: &HfInitConfig, seed: u64) -> Result<Vec<HfTensor>, String> {
    let mut g = TorchGenerator::manual_seed(seed);
    hf_init_weights_with(cfg, &mut g)
}

/// [`hf_init_weights`] drawing from `g`, which is left where `from_config` leaves torch's
/// generator (what PEFT's adapter init, for one, draws from next).
pub fn hf_init_weights_with(
    cfg: &HfInitConfig,
    g: &mut TorchGenerator,
) -> Result<Vec<HfTensor>, String> {
    cfg.check()?;
    let lay = cfg.layout()?;
    let std = cfg.std()?;
    let pad = cfg.padding_idx()?;
    let (v, h) = (cfg.vocab_size, cfg.hidden_size);
    let linears = layer_linears(cfg, &lay);

    // 1. constructors: nn.Embedding normal_(0, 1), each layer's nn.Linear kaiming/bias uniforms
    g.skip_normal_(v * h);
    for _ in 0..cfg.num_hidden_layers {
        for l in &linears {
            g.skip_linear_reset_(l.out, l.inp, l.bias);
        }
    }

    // 2. XModel.post_init: embedding (pad row zeroed), Linear weights normal_(0, std), zero biases
    let mut embed = g.normal_(v * h, 0.0, std);
    if let Some(p) = pad {
        embed[p * h..(p + 1) * h].fill(0.0);
    }
    let mut out: Vec<HfTensor> = vec![("model.embed_tokens.weight".into(), vec![v, h], embed)];
    for layer in 0..cfg.num_hidden_layers {
        let prefix = format!("model.layers.{layer}");
        for l in &linears {
            let w = g.normal_(l.out * l.inp, 0.0, std);
            out.push((format!("{prefix}.{}.weight", l.name), vec![l.out, l.inp], w));
            if l.bias {
                out.push((
                    format!("{prefix}.{}.bias", l.name),
                    vec![l.out],
                    vec![0.0; l.out],
                ));
            }
            if lay.qk_norm && l.name == "self_attn.o_proj" {
                for n in ["q_norm", "k_norm"] {
                    out.push(norm(
                        format!("{prefix}.self_attn.{n}.weight"),
                        cfg.head_dim,
                        &lay,
                    ));
                }
            }
        }
        out.push(norm(format!("{prefix}.input_layernorm.weight"), h, &lay));
        out.push(norm(
            format!("{prefix}.post_attention_layernorm.weight"),
            h,
            &lay,
        ));
    }
    out.push(norm("model.norm.weight".into(), h, &lay));

    // 3. lm_head = nn.Linear(H, V, bias=False); 4. outer post_init: lm_head normal_(0, std),
    // then tie_weights (the tied head's draws are taken all the same)
    g.skip_linear_reset_(v, h, false);
    if cfg.tie_word_embeddings {
        g.skip_normal_(v * h);
    } else {
        let w = g.normal_(v * h, 0.0, std);
        out.push(("lm_head.weight".into(), vec![v, h], w));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// f32 bit patterns as `make_scratch_init.py` writes them.
    fn bits(v: &[f32]) -> Vec<String> {
        v.iter().map(|x| format!("{:08x}", x.to_bits())).collect()
    }

    fn llama() -> HfInitConfig {
        HfInitConfig {
            model_type: "llama".into(),
            vocab_size: 397,
            hidden_size: 64,
            intermediate_size: 100,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: 16,
            initializer_range: 0.02,
            pad_token_id: Some(3),
            tie_word_embeddings: false,
            attention_bias: false,
            mlp_bias: false,
            dtype: None,
        }
    }

    // Values from cases.json `torch_ops.sequence_seed42`: one stream after torch.manual_seed(42).
    #[test]
    fn torch_sequence_seed42() {
        let mut g = TorchGenerator::manual_seed(42);
        let u = g.uniform_(37, -0.3, 0.7);
        assert_eq!(
            bits(&u[..4]),
            ["3f150f99", "3f1d70e6", "3da9b478", "3f28c841"]
        );
        assert_eq!(bits(&u[35..]), ["3f024c2f", "3e8e4c3c"]);
        let n = g.normal_(37, 0.5, 2.0); // vector path, tail redone, fma with a mean
        assert_eq!(
            bits(&n[..4]),
            ["beb2b51a", "3f8e43ba", "bf864bb2", "3f11e008"]
        );
        assert_eq!(bits(&n[35..]), ["3ffe73a3", "beed2476"]);
        let s = g.normal_(5, 0.25, 3.0); // scalar path: leaves a cached sample
        assert_eq!(
            bits(&s),
            ["3ff5ce73", "c00bf876", "4075b622", "40355efd", "c076b270"]
        );
        let s = g.normal_(3, -1.0, 0.5); // starts with the cached sample
        assert_eq!(bits(&s), ["bfb188f8", "bf9bf8de", "bf76109f"]);
        let n = g.normal_(16, 0.0, 0.02);
        assert_eq!(
            bits(&n[..4]),
            ["3b761625", "bbea5f2f", "bbcf6d47", "3c40e232"]
        );
        assert_eq!(bits(&n[14..]), ["b9850452", "3b9dd5a1"]);
        let u = g.uniform_(4, 0.0, 1.0);
        assert_eq!(bits(&u), ["3eee42a2", "3e250db8", "3e2090d0", "3e554c5c"]);
    }

    // `torch.manual_seed(7); nn.Linear(7, 5)` (cases.json `torch_ops.linear_7_to_5_seed7`).
    #[test]
    fn torch_linear_reset() {
        let mut g = TorchGenerator::manual_seed(7);
        let (w, b) = g.linear_reset_(5, 7, true);
        assert_eq!(
            bits(&w[..4]),
            ["3cd842a1", "be6925d5", "3df67b7e", "3df2e374"]
        );
        assert_eq!(
            bits(&b.unwrap_or_default()),
            ["3eb1bbb1", "bdac3e48", "be579ecb", "bdc2c0cc", "be6be454"]
        );
    }

    // Draw counts measured in torch (cases.json `torch_ops.draw_counts`).
    #[test]
    fn torch_draw_counts() {
        let counts = [
            (1, 4),
            (2, 4),
            (3, 8),
            (5, 12),
            (15, 32),
            (16, 16),
            (17, 33),
            (31, 47),
            (32, 32),
            (33, 49),
            (100, 116),
            (397, 413),
        ];
        let raw: Vec<u32> = {
            let mut g = TorchGenerator::manual_seed(3);
            (0..1000).map(|_| g.random()).collect()
        };
        let position = |g: &mut TorchGenerator| {
            let next = [g.random(), g.random()];
            raw.windows(2).position(|w| w == next)
        };
        for (n, normal_draws) in counts {
            let mut g = TorchGenerator::manual_seed(3);
            g.normal_(n, 0.0, 0.02);
            assert_eq!(position(&mut g), Some(normal_draws), "normal_ {n}");
            let mut g = TorchGenerator::manual_seed(3);
            g.skip_normal_(n);
            assert_eq!(position(&mut g), Some(normal_draws), "skip_normal_ {n}");
            let mut g = TorchGenerator::manual_seed(3);
            g.uniform_(n, -0.1, 0.1);
            assert_eq!(position(&mut g), Some(n), "uniform_ {n}");
        }
        let mut g = TorchGenerator::manual_seed(3);
        g.normal_(1, 0.0, 1.0);
        g.normal_(1, 0.0, 1.0);
        assert_eq!(position(&mut g), Some(4), "normal_ 1 then 1 (cached)");
        let mut g = TorchGenerator::manual_seed(3);
        g.skip_normal_(3);
        g.skip_normal_(3);
        assert_eq!(position(&mut g), Some(12), "normal_ 3 then 3");
    }

    // A zero uniform in a radius slot (seed 34, index 298484): torch stores +0.0 there (and in
    // its partner 8 later) because of the final fma with the mean (cases.json
    // `torch_ops.zero_uniform`).
    #[test]
    fn torch_zero_radius_is_positive_zero() {
        let mut g = TorchGenerator::manual_seed(34);
        let v = g.normal_(298_496, 0.0, 1.0);
        assert_eq!(v[298_484].to_bits(), 0);
        assert_eq!(v[298_492].to_bits(), 0);
        let r = crate::optim::torch_randn::randn(298_496, 34);
        assert_eq!(r[298_484].to_bits(), 0);
    }

    #[test]
    fn torch_init_refuses() {
        let mut c = llama();
        c.dtype = Some("bfloat16".into());
        assert!(hf_init_weights(&c, 1).unwrap_err().contains("bfloat16"));
        let mut c = llama();
        c.model_type = "gemma2".into();
        assert!(hf_init_weights(&c, 1).unwrap_err().contains("gemma2"));
        let mut c = llama();
        c.pad_token_id = Some(397);
        assert!(hf_init_weights(&c, 1).unwrap_err().contains("pad_token_id"));
        let mut c = llama();
        c.initializer_range = -1.0;
        assert!(hf_init_weights(&c, 1).is_err());
    }

    #[test]
    fn torch_init_names_and_pad_row() {
        let mut c = llama();
        c.pad_token_id = Some(-1); // nn.Embedding: the last row
        let w = hf_init_weights(&c, 42).unwrap_or_default();
        assert_eq!(w.len(), 21);
        assert_eq!(w[0].0, "model.embed_tokens.weight");
        assert!(w[0].2[396 * 64..].iter().all(|x| x.to_bits() == 0));
        assert_eq!(w[20].0, "lm_head.weight");
        c.tie_word_embeddings = true;
        let tied = hf_init_weights(&c, 42).unwrap_or_default();
        assert_eq!(tied.len(), 20);
        assert_eq!(tied[..], w[..20]);
    }
}
