#!/usr/bin/env python3
"""PyTorch's numbers on the shapes of `gpu_bench` (bench/src/gpu/), for ci/gpu-check.sh.

One JSON line per measurement on stdout, with the keys of the Rust bench so that
ci/gpu_table.py can put the two side by side:
    {"impl": "torch", "key": ..., "bench": ..., "unit": ..., "value": ..., "status": "ok", ...}
`value` is null (with `status` "n/a" or "error" and a `reason`) when a measurement could not
be made. Progress and errors go to stderr.

    python3 bench/gpu/torch_ref.py [--quick] [--only NAME ...] [--device cuda|cpu] [--tiny]

NAME: gemm copy attn ce gemv. `--tiny --device cpu` runs every bench on toy shapes, on
the CPU: a smoke test of this script on a machine without a GPU (its numbers mean nothing).

What is measured (timing: CUDA events around each timed iteration after a warm-up; the
median is reported, as gpu_bench does):
- gemm: `a @ b`, bf16 8192^3 and f32 4096^3 (TF32 off: exact fp32, like lmf's f32 GEMM).
- copy: `dst.copy_(src)` of 1 GiB, bytes read + written.
- attn: `F.scaled_dot_product_attention` with the flash backend forced, bf16, causal, 16
  heads of 128, seq 1k/4k/8k with batch = 16384/seq; inputs laid out [b, s, h, d] and
  transposed, as HF models call it. FLOPs as FlashAttention's benchmark counts them.
- ce: materialised logits `x @ W.T` in bf16, `F.cross_entropy(logits.float(), labels)` (as
  HF's loss does), forward + backward to x and W; time and peak memory
  (`torch.cuda.max_memory_allocated`, inputs and gradients included).
- gemv: n/a (no NF4 GEMV in plain PyTorch; gpu_bench's is read against the copy bandwidth).
- The end-to-end LoRA step is bench/gpu/e2e_lora_torch.py (run by ci/gpu-check.sh on the
  model folder `lmf train` trains).
"""

import argparse
import json
import statistics
import sys
import time
import traceback

import torch
import torch.nn.functional as F

GIB = float(1 << 30)
EMITTED = set()  # keys printed by the bench running now


def emit(key, bench, unit, value, status="ok", **extra):
    EMITTED.add(key)
    line = {"impl": "torch", "key": key, "bench": bench, "unit": unit, "value": value,
            "status": status}
    line.update(extra)
    print(json.dumps(line), flush=True)


def log(msg):
    print(f"torch_ref: {msg}", file=sys.stderr, flush=True)


class Env:
    def __init__(self, args):
        self.dev = torch.device(args.device)
        self.cuda = self.dev.type == "cuda"
        self.tiny = args.tiny
        self.warmup, self.iters = (1, 3) if args.quick else (3, 20)

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def time(self, fn, warmup=None, iters=None):
        """Median and best milliseconds per call of `fn` after `warmup` calls."""
        warmup = self.warmup if warmup is None else warmup
        iters = self.iters if iters is None else iters
        for _ in range(warmup):
            fn()
        self.sync()
        ms = []
        if self.cuda:
            ev = [torch.cuda.Event(enable_timing=True) for _ in range(iters + 1)]
            ev[0].record()
            for i in range(iters):
                fn()
                ev[i + 1].record()
            torch.cuda.synchronize()
            ms = [ev[i].elapsed_time(ev[i + 1]) for i in range(iters)]
        else:
            for _ in range(iters):
                t = time.perf_counter()
                fn()
                ms.append((time.perf_counter() - t) * 1e3)
        return {"ms": statistics.median(ms), "min_ms": min(ms), "iters": iters}

    def reset_peak(self):
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()

    def peak_gib(self):
        if self.cuda:
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() / GIB
        return None

    def used_gib(self):
        return torch.cuda.memory_allocated() / GIB if self.cuda else None

    def free(self):
        if self.cuda:
            torch.cuda.empty_cache()


def rate(t, units, scale):
    return units / (t["ms"] * 1e-3) / scale


# ---- gemm ----------------------------------------------------------------------------------

GEMM_KEYS = [
    ("gemm_bf16_8192", "torch matmul bf16 8192x8192x8192", "TFLOP/s"),
    ("gemm_f32_4096", "torch matmul f32 4096x4096x4096 (TF32 off)", "TFLOP/s"),
]


def bench_gemm(env):
    try:  # torch >= 2.9
        torch.backends.cuda.matmul.fp32_precision = "ieee"
    except (AttributeError, RuntimeError):
        torch.backends.cuda.matmul.allow_tf32 = False
    for (key, bench, unit), dtype, n in zip(GEMM_KEYS, (torch.bfloat16, torch.float32),
                                            (8192, 4096)):
        n = 256 if env.tiny else n
        a = torch.rand(n, n, device=env.dev, dtype=dtype) * 2 - 1
        b = torch.rand(n, n, device=env.dev, dtype=dtype) * 2 - 1
        c = torch.empty(n, n, device=env.dev, dtype=dtype)
        t = env.time(lambda: torch.matmul(a, b, out=c))
        emit(key, bench, unit, rate(t, 2.0 * n ** 3, 1e12), **t)
        del a, b, c
    env.free()


# ---- copy ----------------------------------------------------------------------------------

COPY_KEYS = [("copy_1gib", "torch copy_ 1 GiB (bytes read + written)", "GB/s")]


def bench_copy(env):
    n = (1 << 20) if env.tiny else (1 << 30)
    src = torch.zeros(n, dtype=torch.uint8, device=env.dev)
    dst = torch.empty_like(src)
    t = env.time(lambda: dst.copy_(src))
    emit(*COPY_KEYS[0], rate(t, 2.0 * n, 1e9), bytes_per_iter=2 * n, **t)
    del src, dst
    env.free()


# ---- attention -----------------------------------------------------------------------------

SEQS = [1024, 4096, 8192]
HEADS, HEAD_DIM, TOKENS = 16, 128, 16384
ATTN_KEYS = ([(f"attn_fwd_s{s}", f"SDPA flash fwd bf16 causal b{TOKENS // s} h16 s{s} d128",
               "TFLOP/s") for s in SEQS]
             + [(f"attn_fwdbwd_s{s}",
                 f"SDPA flash fwd+bwd bf16 causal b{TOKENS // s} h16 s{s} d128", "TFLOP/s")
                for s in SEQS])


def attn_fwd_flops(batch, heads, seq, dim, causal=True):
    f = 4.0 * batch * heads * seq * seq * dim
    return f / 2 if causal else f


def bench_attn(env):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backend = SDPBackend.FLASH_ATTENTION
    for i, seq in enumerate(SEQS):
        heads, dim, tokens = HEADS, HEAD_DIM, TOKENS
        if env.tiny:
            seq, heads, dim, tokens = seq // 32, 2, 32, 256
        batch = max(tokens // seq, 1)

        def mk(seed):
            g = torch.Generator(device=env.dev).manual_seed(seed)
            x = torch.randn(batch, seq, heads, dim, device=env.dev, dtype=torch.bfloat16,
                            generator=g)
            return x.transpose(1, 2)  # [b, h, s, d] view of a [b, s, h, d] tensor

        q, k, v, dout = mk(1), mk(2), mk(3), mk(4)
        flops = attn_fwd_flops(batch, heads, seq, dim)
        with sdpa_kernel(backend), torch.no_grad():
            t = env.time(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
        emit(*ATTN_KEYS[i], rate(t, flops, 1e12), batch=batch, **t)

        q.requires_grad_(True)
        k.requires_grad_(True)
        v.requires_grad_(True)

        def fwd_bwd():
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            torch.autograd.grad(o, (q, k, v), dout)

        with sdpa_kernel(backend):
            t = env.time(fwd_bwd)
        emit(*ATTN_KEYS[i + len(SEQS)], rate(t, 3.5 * flops, 1e12), batch=batch, **t)
        del q, k, v, dout
        env.free()


# ---- fused linear cross-entropy (here: materialised logits) --------------------------------

CE_KEYS = [
    ("ce_fwdbwd_ms", "x @ W.T bf16 + F.cross_entropy fp32 fwd+bwd 8192 tok x 4096 -> 128256",
     "ms"),
    ("ce_peak_gib", "materialised-logits CE fwd+bwd peak memory (inputs + grads included)",
     "GiB"),
]


def bench_ce(env):
    n, hidden, vocab = (64, 64, 1000) if env.tiny else (8192, 4096, 128256)
    g = torch.Generator(device=env.dev).manual_seed(5)
    x = torch.randn(n, hidden, device=env.dev, dtype=torch.bfloat16, generator=g)
    w = (torch.randn(vocab, hidden, device=env.dev, dtype=torch.bfloat16, generator=g)
         * 0.02)
    x.requires_grad_(True)
    w.requires_grad_(True)
    labels = torch.randint(0, vocab, (n,), device=env.dev, generator=g)

    def step():
        logits = x @ w.T
        loss = F.cross_entropy(logits.float(), labels, ignore_index=-100)
        torch.autograd.grad(loss, (x, w))

    step()
    env.sync()
    inputs = env.used_gib()
    env.reset_peak()
    step()
    peak = env.peak_gib()
    t = env.time(step)
    emit(*CE_KEYS[0], t["ms"], **t)
    if peak is None:
        emit(*CE_KEYS[1], None, status="n/a", reason="no CUDA memory stats on this device")
    else:
        emit(*CE_KEYS[1], peak, inputs_gib=inputs, above_inputs_gib=peak - inputs)
    del x, w, labels
    env.free()


# ---- NF4 GEMV ------------------------------------------------------------------------------

GEMV_KEYS = [("gemv_nf4_8192", "NF4 dequant GEMV 8192x8192", "GB/s")]


def bench_gemv(env):
    emit(*GEMV_KEYS[0], None, status="n/a",
         reason="no NF4 GEMV in PyTorch (target: lmf GEMV >= 0.80 x copy bandwidth)")


# ---- MoE grouped GEMM (bench/src/gpu/moe.rs) ----------------------------------------------

MOE_KEYS = [
    ("moe_grouped_fwd_bf16", "per-expert loop of torch matmul bf16 fwd, 128 experts, 32768 rows, "
     "2048->1536", "TFLOP/s"),
    ("moe_grouped_fwdbwd_bf16", "per-expert loop of torch matmul bf16 fwd + dx + dW", "TFLOP/s"),
]


def moe_offsets(experts, rows):
    """The uneven group sizes of bench/src/gpu/moe.rs: 256 + (37 e mod 129) - 64."""
    off = [0]
    for e in range(experts - 1):
        off.append(off[e] + 256 + (37 * e) % 129 - 64)
    off.append(rows)
    return off


def bench_moe(env):
    experts, rows, k, n = (128, 32768, 2048, 1536) if not env.tiny else (8, 2048, 64, 48)
    off = moe_offsets(experts, rows) if not env.tiny else [256 * e for e in range(experts + 1)]
    dt = torch.bfloat16
    x = torch.rand(rows, k, device=env.dev, dtype=dt) * 2 - 1
    w = (torch.rand(experts, n, k, device=env.dev, dtype=dt) * 2 - 1) * 0.05
    dy = torch.rand(rows, n, device=env.dev, dtype=dt) * 2 - 1
    y = torch.empty(rows, n, device=env.dev, dtype=dt)
    dx = torch.empty(rows, k, device=env.dev, dtype=dt)
    dw = torch.empty(experts, n, k, device=env.dev, dtype=dt)
    groups = [(e, off[e], off[e + 1]) for e in range(experts)]

    def fwd():
        for e, a, b in groups:
            torch.matmul(x[a:b], w[e].t(), out=y[a:b])

    def fwd_bwd():
        fwd()
        for e, a, b in groups:
            torch.matmul(dy[a:b], w[e], out=dx[a:b])
            torch.matmul(dy[a:b].t(), x[a:b], out=dw[e])

    flops = 2.0 * rows * n * k
    t = env.time(fwd)
    emit(*MOE_KEYS[0], rate(t, flops, 1e12), **t)
    t = env.time(fwd_bwd)
    emit(*MOE_KEYS[1], rate(t, 3.0 * flops, 1e12), **t)
    del x, w, dy, y, dx, dw
    env.free()


# ---- driver --------------------------------------------------------------------------------

BENCHES = [
    ("gemm", GEMM_KEYS, bench_gemm),
    ("copy", COPY_KEYS, bench_copy),
    ("attn", ATTN_KEYS, bench_attn),
    ("ce", CE_KEYS, bench_ce),
    ("gemv", GEMV_KEYS, bench_gemv),
    ("moe", MOE_KEYS, bench_moe),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 warm-up, 3 timed iterations")
    ap.add_argument("--only", nargs="*", default=[], help="benches to run (default: all)")
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    ap.add_argument("--tiny", action="store_true", help="toy shapes (smoke test)")
    args = ap.parse_args()
    names = [b[0] for b in BENCHES]
    bad = [n for n in args.only if n not in names]
    if bad:
        ap.error(f"unknown bench {bad} (have: {' '.join(names)})")
    selected = [b for b in BENCHES if not args.only or b[0] in args.only]

    if args.device == "cuda" and not torch.cuda.is_available():
        log("no CUDA device: every measurement is n/a")
        for _, keys, _ in selected:
            for k in keys:
                emit(*k, None, status="n/a", reason="n/a (torch sees no CUDA device)")
        return 0
    env = Env(args)
    if env.cuda:
        log(f"torch {torch.__version__} on {torch.cuda.get_device_name()}")
    failed = False
    for name, keys, fn in selected:
        t0 = time.perf_counter()
        EMITTED.clear()
        try:
            fn(env)
            log(f"{name}: done in {time.perf_counter() - t0:.1f} s")
        except Exception as e:  # report, then go on with the next bench
            failed = True
            log(f"{name}: FAILED: {e!r}")
            traceback.print_exc(file=sys.stderr)
            for k in keys:
                if k[0] not in EMITTED:
                    emit(*k, None, status="error", reason=f"{type(e).__name__}: {e}")
            if env.cuda:
                torch.cuda.empty_cache()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
