#!/usr/bin/env bash
# Batch-1 greedy decoding on the CPU: lmf against llama.cpp and transformers, f32 and bf16,
# measured in one run on the same random ~207M-parameter Llama (hidden 1024, 12 layers, GQA
# 16/8 heads, MLP 2816, vocab 32000: 0.7 GB of f32 weights streamed per token, far more than
# the caches hold), with the machine's memory bandwidth measured beside them.
#
# usage: bench/scripts/decode_vs_llamacpp.sh [NEW_TOKENS [REPEATS]]   (128, 3)
#   env PYTHON: torch + transformers + sentencepiece, for the model, the GGUF converter and
#               transformers' side (default: the reference venv, ~/.cache/lmf-reference-venv,
#               from ../shared/tools/reference-venv.sh)
#   env LLAMACPP_PYTHON: an interpreter with llama-cpp-python (default:
#               ~/.cache/lmf-llamacpp-venv, created on first use: pip builds llama.cpp from
#               PyPI's llama-cpp-python sdist for this CPU, ~10 min on 2 cores)
#   env THREADS: threads on every side (default: nproc)
#
# The sides:
# - llama.cpp: llama-cpp-python $LLAMACPP_VERSION, `Llama.generate` with greedy sampling, on GGUF
#   files made by the converter of the same release (convert_hf_to_gguf.py --outtype f32|bf16,
#   from its sdist); the KV cache in f32 like the other two sides.
# - transformers: `model.generate` (sdpa, KV cache), the model loaded in float32 or bfloat16.
# - lmf: `lmf_models::generate` (what `lmf chat` runs), f32; bf16 keeps the linears and the
#   head in bf16 (`--bf16`: `infer_dtype: bfloat16` on the CPU).
# Each: prompt of 32 random ids, exactly NEW_TOKENS new tokens (no eos), one warm-up then
# the median of REPEATS runs of the whole generation (prefill included); tokens/s = NEW_TOKENS
# / median seconds. "GB/s" is the weight bytes every decode step must read (every linear and
# the head, in the dtype) times tokens/s: with the prefill in the time, a lower bound of the
# streaming rate; "of read bw" puts it against the measured read bandwidth (a 1 GiB sum).
# At f32 the greedy tokens of lmf and llama.cpp are checked against transformers'.
set -euo pipefail
cd "$(dirname "$0")/../.."
new=${1:-128}
reps=${2:-3}
py=${PYTHON:-$HOME/.cache/lmf-reference-venv/bin/python}
threads=${THREADS:-$(nproc)}
LLAMACPP_VERSION=0.3.36
lpy=${LLAMACPP_PYTHON:-$HOME/.cache/lmf-llamacpp-venv/bin/python}
if ! "$lpy" -c 'import llama_cpp' 2>/dev/null; then
  [ -n "${LLAMACPP_PYTHON:-}" ] && { echo "no llama_cpp in $LLAMACPP_PYTHON" >&2; exit 1; }
  echo "building llama-cpp-python $LLAMACPP_VERSION into ~/.cache/lmf-llamacpp-venv (once)" >&2
  python3 -m venv "$HOME/.cache/lmf-llamacpp-venv"
  CMAKE_ARGS="-DGGML_NATIVE=ON" "$HOME/.cache/lmf-llamacpp-venv/bin/pip" install -q \
    --no-binary llama-cpp-python "llama-cpp-python==$LLAMACPP_VERSION" numpy >&2
fi
# llama.cpp's converter, from the sdist of the same release (the wheel does not ship it)
src=$HOME/.cache/lmf-llamacpp-src-$LLAMACPP_VERSION
if [ ! -f "$src/vendor/llama.cpp/convert_hf_to_gguf.py" ]; then
  mkdir -p "$src"
  dl=$(mktemp -d)
  "$lpy" -m pip download -q --no-deps --no-binary llama-cpp-python \
    "llama-cpp-python==$LLAMACPP_VERSION" -d "$dl" >&2
  tar -xzf "$dl"/llama_cpp_python-*.tar.gz -C "$src" --strip-components=1
  rm -rf "$dl"
fi
cargo build --release -q -p lmf-bench --bin generate_tps
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$py" bench/scripts/decode_bench.py make "$dir" >"$dir/make.log" 2>&1 || {
  cat "$dir/make.log" >&2; exit 1; }
for dt in f32 bf16; do
  "$py" "$src/vendor/llama.cpp/convert_hf_to_gguf.py" "$dir" --outtype "$dt" \
    --outfile "$dir/model-$dt.gguf" >"$dir/convert-$dt.log" 2>&1 || {
    cat "$dir/convert-$dt.log" >&2; exit 1; }
done
rows="$dir/rows.jsonl"
: >"$rows"
OMP_NUM_THREADS=$threads "$py" bench/scripts/decode_bench.py bandwidth --threads "$threads" >>"$rows"
for dt in f32 bf16; do
  OMP_NUM_THREADS=$threads "$py" bench/scripts/decode_bench.py hf "$dir" "$new" "$reps" \
    --threads "$threads" --dtype "$dt" --tokens-out "$dir/hf_$dt.json" >>"$rows" 2>"$dir/hf.log" ||
    { cat "$dir/hf.log" >&2; exit 1; }
  "$lpy" bench/scripts/decode_bench.py llamacpp "$dir/model-$dt.gguf" "$dir" "$new" "$reps" \
    --threads "$threads" --dtype "$dt" --tokens-out "$dir/llamacpp_$dt.json" >>"$rows" 2>"$dir/lc.log" ||
    { cat "$dir/lc.log" >&2; exit 1; }
  flag=$([ "$dt" = bf16 ] && echo --bf16 || true)
  RAYON_NUM_THREADS=$threads target/release/generate_tps $flag "$dir" "$dir/prompts.json" \
    "$new" "$reps" "$dir/hf_$dt.json" | sed 's/"impl":"lmf"/"impl":"lmf","dtype":"'"$dt"'"/' >>"$rows"
done
cat "$rows"
echo
"$py" - "$rows" "$dir" "$new" "$reps" "$threads" <<'EOF'
import json, sys
rows_file, d, new, reps, threads = sys.argv[1:]
rows = [json.loads(l) for l in open(rows_file) if l.startswith("{")]
bw = next(r for r in rows if "copy_gb_per_s" in r)
cfg = json.load(open(f"{d}/config.json"))
params = next(r["parameters"] for r in rows if "parameters" in r and r.get("weights") == "f32")
# every decode step reads every weight but the embedding (one row of it) and the norms
streamed = params - cfg["vocab_size"] * cfg["hidden_size"] \
    - (2 * cfg["num_hidden_layers"] + 1) * cfg["hidden_size"]
tps = {(r["impl"], r["dtype"]): r["tokens_per_s"] for r in rows if "tokens_per_s" in r}
print(f"{params / 1e6:.1f}M parameters ({streamed / 1e6:.1f}M streamed per token), {new} new "
      f"tokens, {threads} threads, median of {reps}")
print(f"memory bandwidth: read {bw['read_gb_per_s']} GB/s (1 GiB sum), copy "
      f"{bw['copy_gb_per_s']} GB/s (read + write)")
print("%-5s %-13s %9s %8s %11s %12s %12s" % ("dtype", "impl", "tok/s", "GB/s", "of read bw",
                                            "lmf/llama.cpp", "lmf/transformers"))
for dt, size in (("f32", 4), ("bf16", 2)):
    for impl in ("llama.cpp", "transformers", "lmf"):
        t = tps.get((impl, dt))
        if t is None:
            continue
        gbs = streamed * size * t / 1e9
        extra = ("", "")
        if impl == "lmf":
            lc, hf = tps.get(("llama.cpp", dt)), tps.get(("transformers", dt))
            extra = (f"{t / lc:.2f}" if lc else "-", f"{t / hf:.2f}" if hf else "-")
        print("%-5s %-13s %9.2f %8.1f %10.0f%% %12s %12s" % (
            dt, impl, t, gbs, 100 * gbs / bw["read_gb_per_s"], *extra))
same = next((r["same_tokens_as_transformers"] for r in rows
             if r.get("dtype") == "f32" and "same_tokens_as_transformers" in r), None)
hf_tok = json.load(open(f"{d}/hf_f32.json"))[0]
lc_tok = json.load(open(f"{d}/llamacpp_f32.json"))[0]
print("f32 greedy tokens equal to transformers': lmf", same, "| llama.cpp", lc_tok == hf_tok)
EOF
