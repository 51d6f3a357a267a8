#!/usr/bin/env bash
# CPU LoRA training throughput and peak memory, lmf against LLaMA-Factory 0.9.5, on the same
# YAML: a random ~27M-parameter Llama (hidden 512, 8 layers, 8 heads, 4 kv heads, vocab 8192,
# tied embeddings, float32), LoRA r8 on every linear layer, packing, cutoff_len 512, batch 4.
#
# usage: bench/scripts/train_vs_llamafactory.sh [STEPS [WARMUP]]   (20, 3)
#   LLaMA-Factory needs ~14 CPU-seconds a step here (~7 s on 2 idle cores, ~30 s while a build
#   shares them) plus ~20 s of start-up: the defaults keep both sides within ~10 min; pass 30 5
#   for steadier numbers.
#   env PYTHON: an interpreter with LLaMA-Factory 0.9.5 (default: the reference venv,
#               ~/.cache/lmf-reference-venv, from ../shared/tools/reference-venv.sh)
#   env THREADS: threads on both sides (default: min(2, nproc)); torch's OpenMP threads spin at
#               barriers and slow down many-fold when another process takes a core
#   env LMF: the lmf binary (default: `cargo build --release --bin lmf`, target/release/lmf)
#   env EXTRA: key=value overrides given to both sides, e.g. EXTRA="bf16=true use_cpu=true"
#               (bf16: LLaMA-Factory's CPU autocast, lmf's bf16 products; transformers wants
#               use_cpu beside bf16 on a CPU) or EXTRA="finetuning_type=full" (full fine-tuning)
#
# Both sides run `<cli> train DIR/train.yaml output_dir=...` under `/usr/bin/time -v` (peak RSS)
# from the bench folder; lf_train_bench.py timestamps each line of the run's trainer_log.jsonl
# as it appears (logging_steps 1) and reports tokens/s over the steps after WARMUP (tokens per
# step = 4 rows x 512 positions of the packed batch, padding included). While `lmf train` still
# answers "not implemented", the lmf side is skipped with a message. The final losses of both
# runs are printed too (same YAML and data, so they should agree).
set -euo pipefail
cd "$(dirname "$0")/../.."
read -r -a extra <<<"${EXTRA:-}"
steps=${1:-20}
warmup=${2:-3}
py=${PYTHON:-$HOME/.cache/lmf-reference-venv/bin/python}
cores=$(nproc)
threads=${THREADS:-$((cores < 2 ? cores : 2))}
bench=$PWD/bench/scripts/lf_train_bench.py
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
export OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads RAYON_NUM_THREADS=$threads
export DISABLE_VERSION_CHECK=1 TOKENIZERS_PARALLELISM=false CUDA_VISIBLE_DEVICES=""
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_DATASETS_CACHE="$dir/hf_cache"

"$py" "$bench" make "$dir" "$steps" >"$dir/make.log" 2>&1 || { cat "$dir/make.log" >&2; exit 1; }
made=$(grep '^{' "$dir/make.log")
tokens=$((4 * 512))
lf_cli=$(dirname "$py")/llamafactory-cli

cd "$dir"
lf=$("$py" "$bench" watch llamafactory "$dir/out_lf" "$warmup" "$tokens" -- \
  "$lf_cli" train train.yaml output_dir=out_lf "${extra[@]}")
cd - >/dev/null

lmf_bin=${LMF:-}
if [ -z "$lmf_bin" ]; then
  cargo build --release -q --bin lmf
  lmf_bin=$PWD/target/release/lmf
fi
cd "$dir"
set +e
lmf=$("$py" "$bench" watch lmf "$dir/out_lmf" "$warmup" "$tokens" -- \
  "$lmf_bin" train train.yaml output_dir=out_lmf "${extra[@]}")
rc=$?
set -e
cd - >/dev/null
if [ $rc -eq 3 ]; then
  echo "lmf side skipped: \`lmf train\` is not implemented yet" >&2
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
params = made["parameters"] / 1e6
print(f"{params:.1f}M parameters, LoRA r8 all linear unless overridden, packing, batch 4 x 512, "
      f"'"$steps"' steps (first '"$warmup"' not timed), '"$threads"' threads; overrides: '"${EXTRA:-none}"'")
print("%-13s %10s %14s %8s %11s" % ("", "tokens/s", "peak RSS MiB", "wall s", "last loss"))
for name in ("llamafactory", "lmf"):
    r = res.get(name)
    if r:
        print("%-13s %10.1f %14.1f %8.1f %11.4f" % (name, r["tokens_per_s"], r["peak_rss_mb"],
              r["wall_s"], r["losses"][-1]))
    else:
        print("%-13s %10s %14s %8s %11s" % (name, "-", "-", "-", "-"))
if "lmf" in res:
    lf, lm = res["llamafactory"], res["lmf"]
    print("lmf / llamafactory: tokens/s %.2fx, peak RSS %.2fx" % (
        lm["tokens_per_s"] / lf["tokens_per_s"], lm["peak_rss_mb"] / lf["peak_rss_mb"]))
    worst = max(abs(a - b) / max(abs(a), 1e-12) for a, b in zip(lf["losses"], lm["losses"]))
    print("largest relative loss difference over the logged steps: %.2e" % worst)
'
