#!/usr/bin/env bash
# QLoRA on the CPU: peak RSS and tokens/s of lmf's 4-bit (NF4, double quantization) LoRA run
# against lmf's own fp32 LoRA run and LLaMA-Factory 0.9.5 + bitsandbytes 0.50.2's QLoRA run, on
# the bench model and YAML of train_vs_llamafactory.sh (a random ~27M-parameter Llama, LoRA r8
# on every linear, packing, cutoff_len 512, batch 4) with `quantization_bit: 4` added.
#
# usage: bench/scripts/qlora_vs_llamafactory.sh [STEPS [WARMUP]]   (10, 2)
#   env PYTHON: the reference venv's python (default ~/.cache/lmf-reference-venv/bin/python)
#   env EXTRAS: where ../shared/tools/reference-extras.sh put bitsandbytes
#               (default ~/.cache/lmf-reference-extras)
#   env THREADS, LMF: as in train_vs_llamafactory.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
steps=${1:-10}
warmup=${2:-2}
py=${PYTHON:-$HOME/.cache/lmf-reference-venv/bin/python}
extras=${EXTRAS:-$HOME/.cache/lmf-reference-extras}
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
lmf_bin=${LMF:-}
if [ -z "$lmf_bin" ]; then
  cargo build --release -q --bin lmf
  lmf_bin=$PWD/target/release/lmf
fi

cd "$dir"
lf_q=$(PYTHONPATH="$extras" "$py" "$bench" watch llamafactory_qlora4 "$dir/out_lfq" "$warmup" \
  "$tokens" -- "$lf_cli" train train.yaml output_dir=out_lfq quantization_bit=4)
lmf_f=$("$py" "$bench" watch lmf_lora_fp32 "$dir/out_lmf" "$warmup" "$tokens" -- \
  "$lmf_bin" train train.yaml output_dir=out_lmf)
lmf_q=$("$py" "$bench" watch lmf_qlora4 "$dir/out_lmfq" "$warmup" "$tokens" -- \
  "$lmf_bin" train train.yaml output_dir=out_lmfq quantization_bit=4)
cd - >/dev/null

printf '%s\n%s\n%s\n%s\n' "$made" "$lf_q" "$lmf_f" "$lmf_q" | "$py" -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin if l.startswith("{")]
made, res = rows[0], {r["impl"]: r for r in rows[1:]}
print("%.1fM parameters, LoRA r8 all linear, packing, batch 4 x 512, %s steps (first %s not timed), %s threads"
      % (made["parameters"] / 1e6, "'"$steps"'", "'"$warmup"'", "'"$threads"'"))
print("%-20s %10s %14s %8s %11s" % ("", "tokens/s", "peak RSS MiB", "wall s", "last loss"))
for name in ("llamafactory_qlora4", "lmf_lora_fp32", "lmf_qlora4"):
    r = res[name]
    print("%-20s %10.1f %14.1f %8.1f %11.4f" % (name, r["tokens_per_s"], r["peak_rss_mb"],
          r["wall_s"], r["losses"][-1]))
lq, lf, lff = res["lmf_qlora4"], res["llamafactory_qlora4"], res["lmf_lora_fp32"]
print("lmf QLoRA-4bit / lmf fp32 LoRA: peak RSS %.2fx, step time %.2fx" % (
    lq["peak_rss_mb"] / lff["peak_rss_mb"], lff["tokens_per_s"] / lq["tokens_per_s"]))
print("lmf QLoRA-4bit / LLaMA-Factory QLoRA-4bit: tokens/s %.2fx, peak RSS %.2fx" % (
    lq["tokens_per_s"] / lf["tokens_per_s"], lq["peak_rss_mb"] / lf["peak_rss_mb"]))
worst = max(abs(a - b) / max(abs(a), 1e-12) for a, b in zip(lf["losses"], lq["losses"]))
print("largest relative QLoRA loss difference, lmf vs LLaMA-Factory: %.2e" % worst)
'
