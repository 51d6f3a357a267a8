#!/usr/bin/env bash
# CPU greedy-generation throughput, lmf against transformers, measured in one run on the same
# random ~27M-parameter Llama (hidden 512, 6 layers, 8 heads, vocab 8192, float32).
#
# usage: bench/scripts/generate_vs_transformers.sh [NEW_TOKENS [REPEATS]]   (128, 3)
#   env PYTHON: an interpreter with torch + transformers (default: the reference venv,
#               ~/.cache/lmf-reference-venv, from ../shared/tools/reference-venv.sh)
#   env THREADS: threads on both sides (default: nproc). On a shared machine torch's OpenMP
#               threads spin at every barrier and slow down many-fold when another process
#               takes a core; THREADS=1 gives steadier numbers there.
#   env LMF_GEN_PROFILE=1: lmf also prints its time per phase (prefill, decoder stack,
#               lm_head, arg-max per decode step)
#
# Both sides: prompts of 32 random ids, batch 1 and 4, exactly NEW_TOKENS new tokens per row
# (no eos), one warm-up then the median of REPEATS runs, THREADS threads; tokens/s counts
# the new tokens of all rows. transformers runs `model.generate` (sdpa attention, KV cache);
# lmf runs `lmf_models::generate`. lmf's batch-1 tokens are also checked against
# transformers' (a sanity check: the wide init keeps greedy picks far from ties).
set -euo pipefail
cd "$(dirname "$0")/../.."
new=${1:-128}
reps=${2:-3}
py=${PYTHON:-$HOME/.cache/lmf-reference-venv/bin/python}
threads=${THREADS:-$(nproc)}
cargo build --release -q -p lmf-bench --bin generate_tps
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$py" bench/scripts/hf_generate.py make "$dir" >"$dir/make.log" 2>&1 || {
  cat "$dir/make.log" >&2; exit 1; }
hf=$(OMP_NUM_THREADS=$threads "$py" bench/scripts/hf_generate.py run "$dir" "$new" "$reps" \
  --tokens-out "$dir/hf_tokens.json" --threads "$threads" 2>"$dir/hf.log") || { cat "$dir/hf.log" >&2; exit 1; }
lmf=$(RAYON_NUM_THREADS=$threads target/release/generate_tps "$dir" "$dir/prompts.json" \
  "$new" "$reps" "$dir/hf_tokens.json")
printf '%s\n%s\n' "$hf" "$lmf"
echo
printf '%s\n%s\n' "$hf" "$lmf" | "$py" -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin if l.startswith("{")]
tps = {(r["impl"], r["batch"]): r["tokens_per_s"] for r in rows if "tokens_per_s" in r}
params = next((r["parameters"] for r in rows if "parameters" in r), 0)
same = next((r["same_tokens_as_transformers"] for r in rows if "same_tokens_as_transformers" in r), None)
print(f"{params / 1e6:.1f}M parameters, '"$new"' new tokens, '"$threads"' threads, median of '"$reps"'")
print("%5s %19s %10s %17s" % ("batch", "transformers tok/s", "lmf tok/s", "lmf/transformers"))
for b in sorted({k[1] for k in tps}):
    t, l = tps.get(("transformers", b)), tps.get(("lmf", b))
    ratio = f"{l / t:.2f}" if t and l else "-"
    print("%5s %19s %10s %17s" % (b, t or "-", l or "-", ratio))
print("batch-1 greedy tokens equal:", same)
'
