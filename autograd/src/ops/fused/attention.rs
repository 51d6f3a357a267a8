//! Fused attention node (flash-style, `lmf_kernels::cpu::attention`): packed varlen
//! sequences (`cu_seqlens`), GQA, causal, sliding window, softcap. Saves q, k, v, the output
//! and the per-row log-sum-exp; the `[seq, seq]` probabilities are never stored.

use super::{check_dtype, check_shape, from_kernel, with_real};
use crate::tape::{grad_if, record1};
use crate::var::Var;
use lmf_kernels::cpu::attention::{
    attention_backward, attention_forward, fold_sinks, sinks_backward,
};
use lmf_runtime::{Error, Result, Tensor};

pub use lmf_kernels::cpu::attention::AttnParams;

const OP: &str = "attention";

/// Validates user-facing shapes and parameters (the kernel only asserts).
fn check(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    cu_q: &[usize],
    cu_k: &[usize],
    p: &AttnParams,
) -> Result<()> {
    let bad = |msg: String| Error::invalid(OP, msg);
    // checked_rem also rejects num_kv_heads == 0 (and keeps the 1.85 MSRV).
    if p.num_heads.checked_rem(p.num_kv_heads) != Some(0) {
        return Err(bad(format!(
            "num_kv_heads {} must divide num_heads {}",
            p.num_kv_heads, p.num_heads
        )));
    }
    if p.window == Some(0) || p.softcap.is_some_and(|c| c <= 0.0) {
        return Err(bad("window must be >= 1 and softcap > 0".into()));
    }
    if q.rank() != 3 || k.rank() != 3 {
        return Err(Error::shape(
            OP,
            format!(
                "q {:?} and k {:?} must be [tokens, heads, head_dim]",
                q.shape(),
                k.shape()
            ),
        ));
    }
    let (tq, tk) = (q.shape()[0], k.shape()[0]);
    check_shape(OP, "q", q, &[tq, p.num_heads, p.head_dim])?;
    check_shape(OP, "k", k, &[tk, p.num_kv_heads, p.head_dim])?;
    check_shape(OP, "v", v, &[tk, p.num_kv_heads, p.head_dim])?;
    check_dtype(OP, "k", k, q.dtype())?;
    check_dtype(OP, "v", v, q.dtype())?;
    let sorted = |cu: &[usize], total: usize| {
        cu.first() == Some(&0) && cu.last() == Some(&total) && cu.windows(2).all(|w| w[0] <= w[1])
    };
    if cu_q.len() != cu_k.len() || !sorted(cu_q, tq) || !sorted(cu_k, tk) {
        return Err(bad(format!(
            "cu_seqlens_q {cu_q:?} / cu_seqlens_k {cu_k:?} must be equally long, start at 0, \
             never decrease and end at {tq} / {tk}"
        )));
    }
    Ok(())
}

/// The forward kernel on tensors: `(out, lse)` with `lse: [num_heads, total_q]` kept in the
/// compute type; with `sinks`, folded into every row ([`fold_sinks`]).
fn forward_tensors(
    qt: &Tensor,
    kt: &Tensor,
    vt: &Tensor,
    cu_seqlens_q: &[usize],
    cu_seqlens_k: &[usize],
    params: &AttnParams,
    sinks: Option<&Tensor>,
) -> Result<(Tensor, Tensor)> {
    let (dtype, device) = (qt.dtype(), qt.device());
    let (tq, h) = (qt.shape()[0], params.num_heads);
    Ok(with_real!(dtype, T => {
        let mut out = vec![T::default(); qt.elem_count()];
        let mut lse = vec![T::default(); h * tq];
        attention_forward(
            &qt.as_slice::<T>()?,
            &kt.as_slice::<T>()?,
            &vt.as_slice::<T>()?,
            cu_seqlens_q,
            cu_seqlens_k,
            params,
            &mut out,
            &mut lse,
        );
        if let Some(st) = sinks {
            fold_sinks(&mut out, &mut lse, &real_vec::<T>(st)?, params.head_dim);
        }
        (
            from_kernel(out, qt.shape(), dtype, device)?,
            Tensor::from_vec(lse, &[h, tq], device)?,
        )
    }))
}

/// `t`'s values in the kernels' compute type `T` (f64 for an F64 tensor, else f32).
fn real_vec<T: lmf_runtime::Element>(t: &Tensor) -> Result<Vec<T>> {
    let dt = if t.dtype() == lmf_runtime::DType::F64 {
        lmf_runtime::DType::F64
    } else {
        lmf_runtime::DType::F32
    };
    t.to_dtype(dt)?.to_vec::<T>()
}

/// Attention over packed sequences: `q: [total_q, num_heads, head_dim]`, `k`, `v:
/// [total_k, num_kv_heads, head_dim]`, sequence `b` owning rows `cu[b]..cu[b+1]`; returns
/// `[total_q, num_heads, head_dim]`.
pub fn attention(
    q: &Var,
    k: &Var,
    v: &Var,
    cu_seqlens_q: &[usize],
    cu_seqlens_k: &[usize],
    params: &AttnParams,
) -> Result<Var> {
    let (qt, kt, vt) = (q.tensor(), k.tensor(), v.tensor());
    check(qt, kt, vt, cu_seqlens_q, cu_seqlens_k, params)?;
    if qt.device().is_cuda() {
        return super::cuda::attention::attention(q, k, v, cu_seqlens_q, cu_seqlens_k, params);
    }
    let (out, lse) = forward_tensors(qt, kt, vt, cu_seqlens_q, cu_seqlens_k, params, None)?;
    let saved = vec![qt.clone(), kt.clone(), vt.clone(), out.clone(), lse];
    let (cu_q, cu_k, p) = (cu_seqlens_q.to_vec(), cu_seqlens_k.to_vec(), *params);
    Ok(record1(OP, &[q, k, v], out, saved, move |ctx| {
        let s = ctx.saved_all();
        let (q, k, v, out, lse) = (&s[0], &s[1], &s[2], &s[3], &s[4]);
        let (dq, dk, dv) = with_real!(q.dtype(), T => {
            let mut dq = vec![T::default(); q.elem_count()];
            let mut dk = vec![T::default(); k.elem_count()];
            let mut dv = vec![T::default(); v.elem_count()];
            attention_backward(
                &ctx.grad(0).as_slice::<T>()?,
                &q.as_slice::<T>()?,
                &k.as_slice::<T>()?,
                &v.as_slice::<T>()?,
                &out.as_slice::<T>()?,
                &lse.as_slice::<T>()?,
                &cu_q,
                &cu_k,
                &p,
                &mut dq,
                &mut dk,
                &mut dv,
            );
            (
                from_kernel(dq, q.shape(), q.dtype(), q.device())?,
                from_kernel(dk, k.shape(), k.dtype(), k.device())?,
                from_kernel(dv, v.shape(), v.dtype(), v.device())?,
            )
        });
        Ok(vec![
            grad_if(ctx.needs(0), || Ok(dq))?,
            grad_if(ctx.needs(1), || Ok(dk))?,
            grad_if(ctx.needs(2), || Ok(dv))?,
        ])
    }))
}

/// [`attention`] with GPT-OSS's attention sinks `sinks: [num_heads]`: one learned logit per
/// head in every row's softmax denominator (a key whose value is zero).
///
/// Backward: the standard flash backward run with the sink-inclusive output and lse gives
/// `dq`, `dk`, `dv` (its `P = exp(S − lse')` are the true probabilities and
/// `D = rowsum(dO ⊙ O')` already counts the sink, whose `dP` is 0); and
/// `dsink_h = −Σ_rows exp(sink_h − lse'_row) · D_row`.
#[allow(clippy::too_many_arguments)]
pub fn attention_with_sinks(
    q: &Var,
    k: &Var,
    v: &Var,
    sinks: &Var,
    cu_seqlens_q: &[usize],
    cu_seqlens_k: &[usize],
    params: &AttnParams,
) -> Result<Var> {
    let (qt, kt, vt, st) = (q.tensor(), k.tensor(), v.tensor(), sinks.tensor());
    check(qt, kt, vt, cu_seqlens_q, cu_seqlens_k, params)?;
    check_shape(OP, "sinks", st, &[params.num_heads])?;
    check_dtype(OP, "sinks", st, qt.dtype())?;
    if qt.device().is_cuda() {
        return super::cuda::attention::attention_sinks(
            q,
            k,
            v,
            Some(sinks),
            cu_seqlens_q,
            cu_seqlens_k,
            params,
        );
    }
    let (out, lse) = forward_tensors(qt, kt, vt, cu_seqlens_q, cu_seqlens_k, params, Some(st))?;
    let saved = vec![
        qt.clone(),
        kt.clone(),
        vt.clone(),
        out.clone(),
        lse,
        st.clone(),
    ];
    let (cu_q, cu_k, p) = (cu_seqlens_q.to_vec(), cu_seqlens_k.to_vec(), *params);
    Ok(record1(OP, &[q, k, v, sinks], out, saved, move |ctx| {
        let s = ctx.saved_all();
        let (q, k, v, out, lse, sk) = (&s[0], &s[1], &s[2], &s[3], &s[4], &s[5]);
        let (dq, dk, dv, dsink) = with_real!(q.dtype(), T => {
            let g = ctx.grad(0).as_slice::<T>()?;
            let (o, l) = (out.as_slice::<T>()?, lse.as_slice::<T>()?);
            let mut dq = vec![T::default(); q.elem_count()];
            let mut dk = vec![T::default(); k.elem_count()];
            let mut dv = vec![T::default(); v.elem_count()];
            attention_backward(
                &g, &q.as_slice::<T>()?, &k.as_slice::<T>()?, &v.as_slice::<T>()?, &o, &l,
                &cu_q, &cu_k, &p, &mut dq, &mut dk, &mut dv,
            );
            let mut dsink = vec![T::default(); p.num_heads];
            sinks_backward(&g, &o, &l, &real_vec::<T>(sk)?, p.head_dim, &mut dsink);
            (
                from_kernel(dq, q.shape(), q.dtype(), q.device())?,
                from_kernel(dk, k.shape(), k.dtype(), k.device())?,
                from_kernel(dv, v.shape(), v.dtype(), v.device())?,
                from_kernel(dsink, sk.shape(), sk.dtype(), sk.device())?,
            )
        });
        Ok(vec![
            grad_if(ctx.needs(0), || Ok(dq))?,
            grad_if(ctx.needs(1), || Ok(dk))?,
            grad_if(ctx.needs(2), || Ok(dv))?,
            grad_if(ctx.needs(3), || Ok(dsink))?,
        ])
    }))
}
