#!/usr/bin/env python3
"""The one markdown table of ci/gpu-check.sh, from the JSON lines it collected.

    python3 ci/gpu_table.py RESULTS.jsonl [MORE.jsonl ...]

Input lines (other lines are ignored):
- GPU tests, written by gpu-check.sh per test binary:
  {"impl": "test", "binary": "gpu_rmsnorm", "passed": 1, "failed": 0, "skipped": 1, "rc": 0}
- measurements of gpu_bench ("impl": "lmf") and bench/gpu/torch_ref.py ("impl": "torch"):
  {"impl": ..., "key": ..., "bench": ..., "unit": ..., "value": number or null,
   "status": "ok" | "n/a" | "error", "reason": ...}
- the end-to-end LoRA step of bench/gpu/e2e_lora_lmf.sh and e2e_lora_torch.py:
  {"bench": "e2e_lora_step", "impl": "lmf" | "transformers+peft", "tokens_per_s": ...,
   "peak_bytes": ...}
A later line of the same (impl, key) replaces an earlier one.

Rows: the tests of each binary, then every benchmark with lmf's value, PyTorch's, their
ratio (lmf / torch) and the target of the issue where there is one.
"""

import json
import sys

# key, label, target: (kind, bound, text); kinds: "ge"/"le" on lmf/torch, "copy_ge" on
# lmf / lmf's copy bandwidth; None = for information.
ROWS = [
    ("gemm_bf16_8192", "GEMM bf16 8192³ (TFLOP/s)", None),
    ("gemm_f32_4096", "GEMM f32 4096³, exact fp32 (TFLOP/s)", None),
    ("copy_1gib", "device copy 1 GiB, read+write (GB/s)", None),
    ("attn_fwd_s1024", "flash attn fwd, s 1k (TFLOP/s)", None),
    ("attn_fwd_s4096", "flash attn fwd, s 4k (TFLOP/s)", None),
    ("attn_fwd_s8192", "flash attn fwd, s 8k (TFLOP/s)", None),
    ("attn_fwdbwd_s1024", "flash attn fwd+bwd, s 1k (TFLOP/s)", ("ge", 1.0, "≥ SDPA flash")),
    ("attn_fwdbwd_s4096", "flash attn fwd+bwd, s 4k (TFLOP/s)", ("ge", 1.0, "≥ SDPA flash")),
    ("attn_fwdbwd_s8192", "flash attn fwd+bwd, s 8k (TFLOP/s)", ("ge", 1.0, "≥ SDPA flash")),
    ("ce_fwdbwd_ms", "linear-CE fwd+bwd 8k×4096→128256 (ms)", ("le", 1.0, "≤ torch")),
    ("ce_peak_gib", "linear-CE peak memory (GiB)", ("le", 0.25, "≤ ¼ torch")),
    ("gemv_nf4_8192", "NF4 GEMV 8192² (GB/s)", ("copy_ge", 0.80, "≥ 0.80 × copy BW")),
    ("moe_grouped_fwd_bf16", "MoE grouped GEMM fwd, 128 experts (TFLOP/s)",
     ("ge", 1.0, "≥ per-expert loop")),
    ("moe_grouped_fwdbwd_bf16", "MoE grouped GEMM fwd+dx+dW (TFLOP/s)",
     ("ge", 1.0, "≥ per-expert loop")),
    ("e2e_lora_tok_s", "LoRA step 1B seq 2048 (tokens/s)", ("ge", 1.5, "≥ 1.5× HF+peft")),
    ("e2e_lora_peak_gib", "LoRA step peak memory (GiB)", None),
]


def fmt(v):
    if v is None:
        return "n/a"
    a = abs(v)
    if a >= 100:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def cell(rec):
    """A measurement's table cell: its value, or n/a / error with a short reason."""
    if rec is None:
        return "—", None
    v = rec.get("value")
    if v is not None:
        return fmt(v), v
    status = rec.get("status", "n/a")
    reason = (rec.get("reason") or "").replace("|", "/").replace("\n", " ")
    if reason.startswith("n/a (") and reason.endswith(")"):
        reason = reason[5:-1]
    if len(reason) > 70:
        reason = reason[:67] + "..."
    return (f"{status}: {reason}" if reason else status), None


def main(paths):
    tests, meas, extra_keys = [], {}, []
    for p in paths:
        try:
            lines = open(p, encoding="utf-8", errors="replace").read().splitlines()
        except OSError as e:
            print(f"gpu_table: {p}: {e}", file=sys.stderr)
            continue
        for line in lines:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if r.get("impl") == "test":
                tests.append(r)
                continue
            if r.get("bench") == "e2e_lora_step" and "tokens_per_s" in r:
                # bench/gpu/e2e_lora_{lmf.sh,torch.py}: one line per side.
                impl = "lmf" if r.get("impl") == "lmf" else "torch"
                peak = r.get("peak_bytes") or 0
                rs = [{"impl": impl, "key": "e2e_lora_tok_s", "value": r["tokens_per_s"]},
                      {"impl": impl, "key": "e2e_lora_peak_gib",
                       "value": peak / 2 ** 30 if peak else None, "status": "n/a",
                       "reason": "peak not reported"}]
            else:
                rs = [r]
            for r in rs:
                if r.get("impl") in ("lmf", "torch") and "key" in r:
                    meas[(r["impl"], r["key"])] = r
                    if r["key"] not in extra_keys:
                        extra_keys.append(r["key"])

    out = ["| check | lmf | torch | lmf / torch | target | verdict |",
           "| --- | --- | --- | --- | --- | --- |"]
    for t in tests:
        passed, failed, skipped, rc = (t.get("passed", 0), t.get("failed", 0),
                                       t.get("skipped", 0), t.get("rc", 0))
        text = f"{passed} passed, {failed} failed"
        if skipped:
            text += f" ({skipped} skipped: no CUDA device)"
        if rc not in (0, None) and not failed:
            text += f", exit {rc}" + (" (timeout)" if rc in (124, 137) else "")
        ok = failed == 0 and rc == 0
        verdict = "PASS" if ok and not skipped else ("skipped" if ok else "**FAIL**")
        out.append(f"| tests `{t.get('binary', '?')}` | {text} | | | all pass | {verdict} |")

    known = {k for k, _, _ in ROWS}
    rows = ROWS + [(k, k, None) for k in extra_keys if k not in known]
    copy = (meas.get(("lmf", "copy_1gib")) or {}).get("value")
    for key, label, target in rows:
        lc, lv = cell(meas.get(("lmf", key)))
        tc, tv = cell(meas.get(("torch", key)))
        ratio, verdict, ttext = "", "", "—"
        if target:
            kind, bound, ttext = target
            if kind == "copy_ge":
                r = lv / copy if lv is not None and copy else None
                ratio = f"{r:.2f} × copy BW" if r is not None else ""
            else:
                r = lv / tv if lv is not None and tv else None
                ratio = f"{r:.2f}" if r is not None else ""
            if r is None:
                verdict = "n/a"
            else:
                met = r >= bound if kind in ("ge", "copy_ge") else r <= bound
                verdict = "PASS" if met else "**MISS**"
        elif lv is not None and tv:
            ratio = f"{lv / tv:.2f}"
        out.append(f"| {label} | {lc} | {tc} | {ratio} | {ttext} | {verdict} |")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
