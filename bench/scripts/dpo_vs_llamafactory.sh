#!/usr/bin/env bash
# CPU LoRA DPO training step time and peak memory, lmf against LLaMA-Factory 0.9.5, on the same
# YAML: train_vs_llamafactory.sh's bench model (random Llama, hidden 512, 8 layers, 8 heads,
# 4 kv heads, tied embeddings, float32) with a 32000-token vocabulary (~40M parameters),
# stage dpo, pref_loss sigmoid, pref_beta 0.1, LoRA r8 on every linear layer (the reference
# model is the model with the adapter off), cutoff_len 1024, batch 1: each step is one pair
# whose chosen and rejected sequences are both exactly 1024 tokens.
#
# usage: bench/scripts/dpo_vs_llamafactory.sh [STEPS [WARMUP]]   (4, 1)
#   LLaMA-Factory took 21-30 s a step here (2 cores shared with a build) plus ~30 s of
#   start-up; the bench inputs (a 32000-token BPE, the model) take ~20 s to build: the
#   defaults run in ~2 min, `6 2` in ~3 min (LF side; add lmf's). Pass 6 2 or more for
#   steadier numbers.
#   env PYTHON: an interpreter with LLaMA-Factory 0.9.5 (default: the reference venv,
#               ~/.cache/lmf-reference-venv, from ../shared/tools/reference-venv.sh)
#   env THREADS: threads on both sides (default: min(2, nproc)); torch's OpenMP threads spin at
#               barriers and slow down many-fold when another process takes a core
#   env LMF: the lmf binary (default: `cargo build --release --bin lmf`, target/release/lmf
#               or $CARGO_TARGET_DIR/release/lmf)
#
# Both sides run `<cli> train DIR/train.yaml output_dir=...` under `/usr/bin/time -v` (peak RSS)
# from the bench folder; lf_dpo_bench.py timestamps each line of the run's trainer_log.jsonl
# as it appears (logging_steps 1) and reports the time of each step after the first (the
# first's line also covers loading) and s/step = their mean over the steps after WARMUP. While
# `lmf train` answers "not implemented" for stage dpo, the lmf side is skipped with a message.
# The logged losses of both runs are printed too (same YAML and data: step 1 is ln 2 on both,
# the policy and the reference being the same model; later steps should agree closely).
set -euo pipefail
cd "$(dirname "$0")/../.."
steps=${1:-4}
warmup=${2:-1}
py=${PYTHON:-$HOME/.cache/lmf-reference-venv/bin/python}
cores=$(nproc)
threads=${THREADS:-$((cores < 2 ? cores : 2))}
bench=$PWD/bench/scripts/lf_dpo_bench.py
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
export OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads RAYON_NUM_THREADS=$threads
export DISABLE_VERSION_CHECK=1 TOKENIZERS_PARALLELISM=false CUDA_VISIBLE_DEVICES=""
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_DATASETS_CACHE="$dir/hf_cache"

"$py" "$bench" make "$dir" "$steps" >"$dir/make.log" 2>&1 || { cat "$dir/make.log" >&2; exit 1; }
made=$(grep '^{' "$dir/make.log")
lf_cli=$(dirname "$py")/llamafactory-cli

cd "$dir"
lf=$("$py" "$bench" watch llamafactory "$dir/out_lf" "$warmup" -- \
  "$lf_cli" train train.yaml output_dir=out_lf)
cd - >/dev/null

lmf_bin=${LMF:-}
if [ -z "$lmf_bin" ]; then
  cargo build --release -q --bin lmf
  lmf_bin=${CARGO_TARGET_DIR:-$PWD/target}/release/lmf
fi
cd "$dir"
set +e
lmf=$("$py" "$bench" watch lmf "$dir/out_lmf" "$warmup" -- \
  "$lmf_bin" train train.yaml output_dir=out_lmf)
rc=$?
set -e
cd - >/dev/null
if [ $rc -eq 3 ]; then
  echo "lmf side skipped: \`lmf train\` does not implement stage dpo yet" >&2
  lmf=""
elif [ $rc -ne 0 ]; then
  exit $rc
fi

printf '%s\n%s\n%s\n\n' "$made" "$lf" "$lmf"
printf '%s\n%s\n%s\n' "$made" "$lf" "$lmf" | "$py" -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin if l.startswith("{")]
made = rows[0]
res = {r["impl"]: r for r in rows[1:]}
params, vocab = made["parameters"] / 1e6, made["tokenizer"]
print(f"{params:.1f}M parameters, vocab {vocab}, DPO sigmoid, LoRA r8 all linear, "
      f"batch 1 pair x 2 x 1024 tokens, '"$steps"' steps (first '"$warmup"' not timed), "
      f"'"$threads"' threads")
print("%-13s %8s %14s %8s %10s  %s" % ("", "s/step", "peak RSS MiB", "wall s", "load+1st s",
                                       "per-step s (step 2..)"))
for name in ("llamafactory", "lmf"):
    r = res.get(name)
    if r:
        per = " ".join("%.2f" % t for t in r["step_s"].values())
        print("%-13s %8.2f %14.1f %8.1f %10.1f  %s" % (name, r["s_per_step"], r["peak_rss_mb"],
              r["wall_s"], r["first_step_at_s"], per))
    else:
        print("%-13s %8s %14s %8s %10s" % (name, "-", "-", "-", "-"))
print("losses: " + "; ".join("%s %s" % (n, " ".join("%.4f" % x for x in res[n]["losses"]))
                             for n in ("llamafactory", "lmf") if n in res))
if "lmf" in res:
    lf, lm = res["llamafactory"], res["lmf"]
    print("lmf RSS / LF RSS: %.2fx;  LF time / lmf time (s/step): %.2fx" % (
        lm["peak_rss_mb"] / lf["peak_rss_mb"], lf["s_per_step"] / lm["s_per_step"]))
    worst = max(abs(a - b) / max(abs(a), 1e-12) for a, b in zip(lf["losses"], lm["losses"]))
    print("largest relative loss difference over the logged steps: %.2e" % worst)
'
