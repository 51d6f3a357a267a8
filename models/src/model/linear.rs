//! A dense layer with HF's weight layout: `weight: [out, in]`, optional `bias: [out]`,
//! `y = x · Wᵀ + b` (the transposed view costs no copy: the gemm takes strides), and its
//! optional LoRA adapter (PEFT's `lora.Linear`): plain LoRA and rsLoRA through the fused
//! `lora_linear` node, DoRA from autograd ops with PEFT's formula.

use lmf_autograd::ops::fused::{
    glu, glu_matmul, lora_linear, quant_linear, GluActivation, LoraDropout, QuantBase,
};
use lmf_autograd::rng::reserve;
use lmf_autograd::{Result, Tensor, Var};
use std::cell::Cell;
use std::sync::Arc;

thread_local! {
    /// This thread's train/eval switch for adapter dropout (PEFT's `model.train()`).
    static TRAINING: Cell<bool> = const { Cell::new(false) };
    /// This thread's adapter switch (PEFT's `disable_adapter()` context).
    static ADAPTERS_OFF: Cell<bool> = const { Cell::new(false) };
    /// Whether weight products must be row-independent (see [`batch_invariant`]).
    static BATCH_INVARIANT: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with every weight product of this thread's forwards (the linears without an
/// adapter, and the output head) computed row by row in one fixed order
/// ([`lmf_kernels::cpu::gemm::rows_independent`]), so a token's logits do not depend on the
/// other tokens in the batch: what serving needs to give each request the output it would
/// get alone. Everything else in a forward already works per token or per sequence.
/// Restores the previous state, also when `f` panics.
pub fn batch_invariant<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            BATCH_INVARIANT.with(|a| a.set(self.0));
        }
    }
    let _restore = Restore(BATCH_INVARIANT.with(|a| a.replace(true)));
    f()
}

/// `x · wᵀ` for `x: [n, in]`, `w: [out, in]`, row-independent inside [`batch_invariant`]
/// (the mode is scoped to this one product, so the kernels' own worker threads never see it).
pub(crate) fn weight_product(x: &Var, w: &Var) -> Result<Var> {
    let wt = w.t()?;
    invariant_scope(|| x.matmul(&wt))
}

/// Runs one weight product `f`, row-independent inside [`batch_invariant`].
fn invariant_scope(f: impl FnOnce() -> Result<Var>) -> Result<Var> {
    if BATCH_INVARIANT.with(|a| a.get()) {
        lmf_kernels::cpu::gemm::rows_independent(f)
    } else {
        f()
    }
}

/// Runs `f` with every LoRA/DoRA adapter switched off on this thread, so each [`Linear`]
/// computes its base `x·Wᵀ + b` alone (PEFT's `with model.disable_adapter():`, what the
/// preference stages use as the reference model of a LoRA run). Restores the previous state,
/// also when `f` panics.
pub fn without_adapters<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            ADAPTERS_OFF.with(|a| a.set(self.0));
        }
    }
    let _restore = Restore(ADAPTERS_OFF.with(|a| a.replace(true)));
    f()
}

/// Whether adapters are switched off on this thread (see [`without_adapters`]).
pub fn adapters_disabled() -> bool {
    ADAPTERS_OFF.with(|a| a.get())
}

/// Turns adapter dropout on (training forwards) or off (evaluation, generation: the
/// default) for forwards run on this thread. A flag rather than grad mode because a
/// checkpointed layer runs its first forward under `no_grad` and must still drop.
pub fn set_training(on: bool) {
    TRAINING.with(|t| t.set(on));
}

/// Whether adapter dropout is on for this thread (see [`set_training`]).
pub fn is_training() -> bool {
    TRAINING.with(|t| t.get())
}

/// The LoRA adapter of one linear: `y += scale · B·A·drop(x)` (DoRA: see [`Linear::forward`]).
#[derive(Clone)]
pub struct Lora {
    /// `lora_A.weight: [r, in]`.
    pub a: Var,
    /// `lora_B.weight: [out, r]`.
    pub b: Var,
    /// `alpha / r`, or `alpha / √r` with rsLoRA.
    pub scale: f64,
    /// Dropout probability on the adapter's input (applied only in training mode, see
    /// [`set_training`]).
    pub dropout: f64,
    /// DoRA `lora_magnitude_vector: [out]`; `None` for plain LoRA.
    pub magnitude: Option<Var>,
}

/// `nn.Linear` as a pair of leaf variables, with an optional LoRA adapter; or, quantized
/// (bitsandbytes' `Linear4bit` / `Linear8bitLt`), a frozen [`QuantBase`] in place of the
/// weight.
#[derive(Clone)]
pub struct Linear {
    /// `[out, in]`; for a quantized linear an empty placeholder (`[0]`, frozen) that no
    /// parameter list shows: the weight is [`Linear::quant`].
    pub weight: Var,
    /// `[out]`.
    pub bias: Option<Var>,
    /// The adapter, when one was added or loaded.
    pub lora: Option<Lora>,
    /// The quantized base weight (QLoRA), shared by copies of the model.
    pub quant: Option<Arc<QuantBase>>,
    /// Called with each input `x: [n, in]` before the product (GPTQ's calibration hook).
    pub tap: Option<InputTap>,
}

/// A callback that sees the input of a [`Linear`] (see [`Linear::tap`]).
pub type InputTap = Arc<dyn Fn(&Tensor) + Send + Sync>;

impl Linear {
    /// A linear without adapter.
    pub fn new(weight: Var, bias: Option<Var>) -> Linear {
        Linear {
            weight,
            bias,
            lora: None,
            quant: None,
            tap: None,
        }
    }

    /// A quantized linear (frozen base) with an optional bias.
    pub fn quantized(base: QuantBase, bias: Option<Var>) -> Result<Linear> {
        Ok(Linear {
            weight: Var::leaf(
                Tensor::zeros(&[0], lmf_autograd::DType::F32, lmf_autograd::Device::Cpu)?,
                false,
            ),
            bias,
            lora: None,
            quant: Some(Arc::new(base)),
            tap: None,
        })
    }

    /// `x · Wᵀ` without bias or adapter: the dense product, or the quantized one (in eval
    /// mode an 8-bit base takes bitsandbytes' LLM.int8 path, as `Linear8bitLt` does).
    fn base_product(&self, x: &Var) -> Result<Var> {
        match &self.quant {
            Some(q) => quant_linear(x, q, !is_training()),
            None => weight_product(x, &self.weight),
        }
    }

    /// The base weight `[out, in]` as a tensor: the weight itself, or the quantized weight
    /// dequantized (a temporary, for DoRA's norm).
    pub fn dense_weight(&self) -> Result<Tensor> {
        match &self.quant {
            Some(q) => {
                let (o, i) = q.dims();
                Tensor::from_vec(q.dequantize(), &[o, i], lmf_autograd::Device::Cpu)?
                    .to_dtype(self.dtype())
            }
            None => Ok(self.weight.tensor().clone()),
        }
    }

    /// The compute dtype of this layer (its bias or adapter's for a quantized layer).
    pub fn dtype(&self) -> lmf_autograd::DType {
        match (&self.quant, &self.bias, &self.lora) {
            (Some(_), Some(b), _) => b.dtype(),
            (Some(_), None, Some(l)) => l.a.dtype(),
            _ => self.weight.dtype(),
        }
    }

    /// `act(gate) ⊙ up` (the MLP's gated unit, `[n, in]` each) → this layer → `[n, out]`.
    ///
    /// A plain dense layer (no active adapter, not quantized, no tap) takes the fused
    /// `glu_matmul` node, which keeps gate and up for the backward but not their `[n, in]`
    /// product; the results are the same bits as [`Linear::forward`] of `glu(gate, up)`.
    pub fn forward_glu(&self, gate: &Var, up: &Var, act: GluActivation) -> Result<Var> {
        let adapter = self.lora.is_some() && !adapters_disabled();
        if adapter || self.quant.is_some() || self.tap.is_some() {
            return self.forward(&glu(gate, up, act)?);
        }
        let wt = self.weight.t()?;
        self.add_bias(invariant_scope(|| glu_matmul(gate, up, act, &wt))?)
    }

    /// `y + bias` (`y` itself without a bias).
    fn add_bias(&self, y: Var) -> Result<Var> {
        match &self.bias {
            Some(b) => y.add(b),
            None => Ok(y),
        }
    }

    /// `x: [n, in]` → `[n, out]`.
    ///
    /// Dropout of the adapter input is on only in training mode ([`set_training`]), like
    /// PEFT between `model.train()` and `model.eval()`.
    pub fn forward(&self, x: &Var) -> Result<Var> {
        if let Some(tap) = &self.tap {
            tap(x.tensor());
        }
        let lora = self.lora.as_ref().filter(|_| !adapters_disabled());
        let Some(l) = lora else {
            return self.add_bias(self.base_product(x)?);
        };
        let p = if is_training() { l.dropout } else { 0.0 };
        match &l.magnitude {
            None if self.quant.is_some() => {
                // PEFT's `lora.bnb.Linear4bit`/`Linear8bitLt`: the base result, then
                // `+ lora_B(lora_A(dropout(x))) · scaling`
                let mut y = self.base_product(x)?;
                if let Some(b) = &self.bias {
                    y = y.add(b)?;
                }
                let xd = if p > 0.0 { x.dropout(p)? } else { x.clone() };
                let delta = xd.matmul(&l.a.t()?)?.matmul(&l.b.t()?)?.scale(l.scale)?;
                y.add(&delta)
            }
            None => {
                let dropout = (p > 0.0).then(|| {
                    // One Philox number per input element; the cursor makes checkpoint
                    // recomputes draw the same mask.
                    let st = reserve(x.elem_count() as u64);
                    LoraDropout {
                        p: p as f32,
                        seed: st.seed,
                        offset: st.offset,
                    }
                });
                lora_linear(
                    x,
                    &self.weight,
                    self.bias.as_ref(),
                    &l.a,
                    &l.b,
                    l.scale,
                    dropout,
                )
            }
            Some(m) => self.dora_forward(x, l, m, p),
        }
    }

    /// PEFT's DoRA (`DoraLinearLayer.forward` added to the base result):
    /// `base + bias + (m/‖W + s·B·A‖ − 1)·(xd·Wᵀ) + m/‖·‖ · s·(xd·Aᵀ)·Bᵀ`, where `xd` is the
    /// dropped input (with no dropout, `xd·Wᵀ` is the base result itself) and the row norm is
    /// detached, as in the paper (§4.3) and PEFT.
    fn dora_forward(&self, x: &Var, l: &Lora, m: &Var, p: f64) -> Result<Var> {
        let base = self.base_product(x)?;
        let norm = Var::constant(dora_weight_norm(
            &self.dense_weight()?,
            l.a.tensor(),
            l.b.tensor(),
            l.scale,
        )?);
        // [out]: broadcast over the rows of [n, out]
        let factor = m.div(&norm)?;
        let (xd, base_d) = if p > 0.0 {
            let xd = x.dropout(p)?;
            let bd = self.base_product(&xd)?;
            (xd, bd)
        } else {
            (x.clone(), base.clone())
        };
        let lora = xd.matmul(&l.a.t()?)?.matmul(&l.b.t()?)?;
        let mut y = base
            .add(&factor.affine(1.0, -1.0)?.mul(&base_d)?)?
            .add(&factor.mul(&lora.scale(l.scale)?)?)?;
        if let Some(b) = &self.bias {
            y = y.add(b)?;
        }
        Ok(y)
    }

    /// Appends this layer's parameters as `{prefix}.weight` / `{prefix}.bias`, and the
    /// adapter's under PEFT's names (without `base_model.model.` and the adapter name):
    /// `{prefix}.lora_A.weight`, `{prefix}.lora_B.weight`, `{prefix}.lora_magnitude_vector`.
    /// A quantized layer lists no weight (it is not a parameter: frozen, not on the tape).
    pub fn push_params<'a>(&'a self, prefix: &str, out: &mut Vec<(String, &'a Var)>) {
        if self.quant.is_none() {
            out.push((format!("{prefix}.weight"), &self.weight));
        }
        if let Some(b) = &self.bias {
            out.push((format!("{prefix}.bias"), b));
        }
        if let Some(l) = &self.lora {
            out.push((format!("{prefix}.lora_A.weight"), &l.a));
            out.push((format!("{prefix}.lora_B.weight"), &l.b));
            if let Some(m) = &l.magnitude {
                out.push((format!("{prefix}.lora_magnitude_vector"), m));
            }
        }
    }

    /// [`Linear::push_params`] with mutable access (optimizer steps, freezing).
    pub fn push_params_mut<'a>(&'a mut self, prefix: &str, out: &mut Vec<(String, &'a mut Var)>) {
        if self.quant.is_none() {
            out.push((format!("{prefix}.weight"), &mut self.weight));
        }
        if let Some(b) = &mut self.bias {
            out.push((format!("{prefix}.bias"), b));
        }
        if let Some(l) = &mut self.lora {
            out.push((format!("{prefix}.lora_A.weight"), &mut l.a));
            out.push((format!("{prefix}.lora_B.weight"), &mut l.b));
            if let Some(m) = &mut l.magnitude {
                out.push((format!("{prefix}.lora_magnitude_vector"), m));
            }
        }
    }

    /// `(out, in)`.
    pub fn dims(&self) -> (usize, usize) {
        if let Some(q) = &self.quant {
            return q.dims();
        }
        let s = self.weight.shape();
        (s[0], s[1])
    }
}

/// DoRA's column norm (PEFT `get_weight_norm`): `‖W + s·B·A‖₂` of each output row, `[out]`.
pub fn dora_weight_norm(w: &Tensor, a: &Tensor, b: &Tensor, scale: f64) -> Result<Tensor> {
    let full = w.add(&b.matmul(a)?.scale(scale)?)?;
    full.sqr()?.sum(&[1], false)?.sqrt()
}
