#!/usr/bin/env bash
# Memory-efficient full fine-tuning on the CPU: peak RSS (and tokens/s, last loss) of FULL
# fine-tuning with plain AdamW, GaLore, APOLLO and BAdam, `lmf train` beside LLaMA-Factory 0.9.5
# (`llamafactory-cli train` + galore-torch 1.0, apollo-torch 1.0.3, badam 1.4), 8 runs on one
# YAML: the model and data of train_vs_llamafactory.sh (a random ~27M-parameter Llama, packing,
# cutoff_len 512, batch 4, fp32) with `finetuning_type: full` and the LoRA keys removed, then
#   full    optim: adamw_torch
#   galore  use_galore, galore_target all, rank 16, update_interval 200, scale 2.0, adamw_torch
#   apollo  use_apollo, apollo_target all, rank 16, update_interval 200, scale 32, proj random,
#           scale_type channel, adamw_torch
#   badam   use_badam, badam_mode layer, switch_mode ascending, switch_interval 50 (optim default)
# and prints one row per method: peak RSS of each side, lmf / LF, each side's method / full
# AdamW, tokens/s (over the steps after WARMUP) and the last logged loss of each side.
#
# usage: bench/scripts/memeff_vs_llamafactory.sh [STEPS [WARMUP]]   (10, 2)
#   env PYTHON: the reference venv's python (default ~/.cache/lmf-reference-venv/bin/python)
#   env EXTRAS: where ../shared/tools/reference-extras.sh put galore_torch, apollo_torch and
#               badam (default ~/.cache/lmf-reference-extras), on PYTHONPATH for the LF runs
#   env THREADS, LMF: as in train_vs_llamafactory.sh
#   env LOGS: a folder to copy every run's log to (default: none, the logs go with the temp dir)
#
# A run that fails is reported (its name, exit code and the tail of its log) and left out of
# the table ("-"); the other runs go on. Peak RSS is /usr/bin/time -v's maximum resident set
# of the whole run (load, data processing and training), as in the other train benches.
set -uo pipefail
cd "$(dirname "$0")/../.."
steps=${1:-10}
warmup=${2:-2}
py=${PYTHON:-$HOME/.cache/lmf-reference-venv/bin/python}
extras=${EXTRAS:-$HOME/.cache/lmf-reference-extras}
cores=$(nproc)
threads=${THREADS:-$((cores < 2 ? cores : 2))}
bench=$PWD/bench/scripts/lf_train_bench.py
dir=$(mktemp -d)
trap '[ -n "${LOGS:-}" ] && mkdir -p "$LOGS" && cp "$dir"/*.log "$LOGS"/ 2>/dev/null; rm -rf "$dir"' EXIT
export OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads RAYON_NUM_THREADS=$threads
export DISABLE_VERSION_CHECK=1 TOKENIZERS_PARALLELISM=false CUDA_VISIBLE_DEVICES=""
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_DATASETS_CACHE="$dir/hf_cache"

"$py" "$bench" make "$dir" "$steps" >"$dir/make.log" 2>&1 || { cat "$dir/make.log" >&2; exit 1; }
made=$(grep '^{' "$dir/make.log")
tokens=$((4 * 512))
lf_cli=$(dirname "$py")/llamafactory-cli
lmf_bin=${LMF:-}
if [ -z "$lmf_bin" ]; then
  cargo build --release -q --bin lmf || exit 1
  lmf_bin=$PWD/target/release/lmf
fi

# full.yaml: train.yaml without its LoRA keys, finetuning_type full
sed -e '/^lora_/d' -e 's/^finetuning_type: lora$/finetuning_type: full/' \
  "$dir/train.yaml" >"$dir/full.yaml"
grep -q '^finetuning_type: full$' "$dir/full.yaml" || { echo "full.yaml: no finetuning_type" >&2; exit 1; }

methods="full galore apollo badam"
overrides() {
  case $1 in
    full) echo "optim=adamw_torch" ;;
    galore) echo "use_galore=true galore_target=all galore_rank=16 galore_update_interval=200" \
      "galore_scale=2.0 optim=adamw_torch" ;;
    apollo) echo "use_apollo=true apollo_target=all apollo_rank=16 apollo_update_interval=200" \
      "apollo_scale=32 apollo_proj=random apollo_scale_type=channel optim=adamw_torch" ;;
    badam) echo "use_badam=true badam_mode=layer badam_switch_mode=ascending" \
      "badam_switch_interval=50" ;;
  esac
}

results=""
failed=""
run() {  # run IMPL METHOD: one watched run; its JSON line goes to $results
  local impl=$1 method=$2 name="$1_$2" out rc
  local -a cmd
  # shellcheck disable=SC2207
  local -a extra=($(overrides "$method"))
  if [ "$impl" = lmf ]; then
    cmd=("$lmf_bin" train full.yaml "output_dir=out_$name" "${extra[@]}")
  else
    cmd=(env "PYTHONPATH=$extras${PYTHONPATH:+:$PYTHONPATH}" "$lf_cli" train full.yaml
      "output_dir=out_$name" "${extra[@]}")
  fi
  echo "running $name ..." >&2
  out=$(cd "$dir" && "$py" "$bench" watch "$name" "$dir/out_$name" "$warmup" "$tokens" -- \
    "${cmd[@]}" 2>"$dir/$name.err")
  rc=$?
  if [ $rc -eq 0 ] && [ -n "$out" ]; then
    echo "$out" >&2
    results+="$out"$'\n'
  else
    failed+=" $name"
    echo "FAILED: $name (exit $rc): ${cmd[*]}" >&2
    if [ -s "$dir/$name.log" ]; then
      echo "--- tail of its log:" >&2
      tail -n 25 "$dir/$name.log" >&2
    elif [ -s "$dir/$name.err" ]; then
      tail -n 25 "$dir/$name.err" >&2
    else
      echo "(no output)" >&2
    fi
    echo "---" >&2
  fi
  rm -rf "$dir/out_$name"
}

for m in $methods; do
  run llamafactory "$m"
  run lmf "$m"
done

printf '%s\n%s' "$made" "$results" | "$py" -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin if l.startswith("{")]
made, res = rows[0], {r["impl"]: r for r in rows[1:]}
print("%.1fM parameters, full fine-tuning, packing, batch 4 x 512, fp32, %s steps (first %s not timed), %s threads"
      % (made["parameters"] / 1e6, "'"$steps"'", "'"$warmup"'", "'"$threads"'"))
def get(impl, m, key):
    r = res.get(f"{impl}_{m}")
    if r is None:
        return None
    return r["losses"][-1] if key == "loss" else r[key]
def fmt(v, f):
    return "-" if v is None else f % v
def ratio(a, b):
    return None if a is None or b is None else a / b
hdr = ("method", "lmf RSS MiB", "LF RSS MiB", "lmf/LF", "lmf m/full", "LF m/full",
       "lmf tok/s", "LF tok/s", "lmf loss", "LF loss")
print("%-7s %11s %11s %7s %10s %10s %9s %9s %9s %9s" % hdr)
for m in "'"$methods"'".split():
    lr, fr = get("lmf", m, "peak_rss_mb"), get("llamafactory", m, "peak_rss_mb")
    print("%-7s %11s %11s %7s %10s %10s %9s %9s %9s %9s" % (
        m, fmt(lr, "%.1f"), fmt(fr, "%.1f"), fmt(ratio(lr, fr), "%.2fx"),
        fmt(ratio(lr, get("lmf", "full", "peak_rss_mb")), "%.2fx"),
        fmt(ratio(fr, get("llamafactory", "full", "peak_rss_mb")), "%.2fx"),
        fmt(get("lmf", m, "tokens_per_s"), "%.1f"), fmt(get("llamafactory", m, "tokens_per_s"), "%.1f"),
        fmt(get("lmf", m, "loss"), "%.4f"), fmt(get("llamafactory", m, "loss"), "%.4f")))
print("(lmf/LF: peak RSS lmf / LF; m/full: peak RSS of the method / full AdamW on the same side)")
'
if [ -n "$failed" ]; then
  echo "failed runs:$failed" >&2
  exit 1
fi
