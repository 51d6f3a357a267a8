#!/usr/bin/env python3
"""The preference stages end to end on a device: `lmf train` on cases of
tests/fixtures/hf/train/cases/ (LLaMA-Factory 0.9.5 runs on the CPU, fp32; see that folder's
README), compared with LF's logged losses and rewards / logps / kl metrics.

    python3 ci/gpu_pref_parity.py LMF [CASE ...]     (LMF_DEVICE picks the device: cuda:0)

Prints one line per case and, last, the gpu-check test line
{"impl": "test", "binary": "pref_parity", "passed": .., "failed": .., "skipped": 0, "rc": ..}.
Tolerance 2e-3 relative (+1e-5): the fixtures are fp32 CPU runs, the device run is fp32 too
(the cases set bf16: false), so only summation order differs. Standard library only.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "tests", "fixtures", "hf", "train")
CASES = ["dpo_sigmoid_llama", "dpo_orpo_qwen", "dpo_full_llama", "rm_llama", "kto_llama"]
REL, ABS = 2e-3, 1e-5


def history(path):
    with open(path) as f:
        return [l for l in json.load(f)["log_history"] if "loss" in l]


def compared(key):
    return key == "loss" or key == "kl" or key.startswith(("rewards/", "logps/"))


def check(case, lmf, out):
    env = dict(os.environ)
    res = subprocess.run(
        [lmf, "train", f"cases/{case}/{case}.yaml", f"output_dir={out}", "do_eval=false",
         "eval_strategy=no"],
        cwd=FIX, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        return f"lmf exited {res.returncode}: {res.stderr.strip().splitlines()[-1:]}"
    lf = history(os.path.join(FIX, "cases", case, "trainer_state.json"))
    us = history(os.path.join(out, "trainer_state.json"))
    if len(lf) != len(us):
        return f"{len(us)} logged steps, LF {len(lf)}"
    worst = 0.0
    for a, b in zip(lf, us):
        for k, x in a.items():
            if not compared(k):
                continue
            if k not in b:
                return f"step {a['step']}: no {k}"
            d, tol = abs(x - b[k]), REL * max(abs(x), abs(b[k])) + ABS
            if d > tol:
                return f"step {a['step']}: {k} LF {x} lmf {b[k]}"
            worst = max(worst, d / tol)
    return worst


def main(argv):
    lmf, cases = os.path.abspath(argv[1]), argv[2:] or CASES
    passed = failed = 0
    for case in cases:
        out = tempfile.mkdtemp(prefix=f"lmf-pref-{case}-")
        try:
            r = check(case, lmf, out)
        finally:
            shutil.rmtree(out, ignore_errors=True)
        if isinstance(r, float):
            passed += 1
            print(f"pref_parity {case}: ok (largest difference {r:.1%} of the tolerance)", flush=True)
        else:
            failed += 1
            print(f"pref_parity {case}: FAILED: {r}", flush=True)
    print(json.dumps({"impl": "test", "binary": "pref_parity", "passed": passed,
                      "failed": failed, "skipped": 0, "rc": int(failed > 0)}))
    return int(failed > 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
