#!/usr/bin/env bash
# The one command for a machine with an NVIDIA GPU: runs every GPU test binary (each compares
# a CUDA kernel with its CPU twin) and the preference stages on the device against LF's runs
# (ci/gpu_pref_parity.py), then the benchmarks (bench/src/bin/gpu_bench.rs and
# PyTorch's numbers on the same shapes, bench/gpu/torch_ref.py), then the end-to-end LoRA
# step (bench/gpu/e2e_lora_{lmf.sh,torch.py} on one `lmf init` Llama-3.2-1B-shaped model),
# then prints ONE markdown table. Meant to finish in under 8 minutes (budget
# GPU_CHECK_BUDGET, default 465 s, split among the steps with `timeout`; the tests have
# priority, the e2e step gets what is left).
#
#   ci/gpu-check.sh [--quick]          --quick: 1 warm-up + 3 timed iterations per bench
#
# GPU_CHECK_E2E: 1 runs the end-to-end step, 0 skips it, auto (default) runs it where
# `nvidia-smi -L` works or torch sees a CUDA device.
#
# Binaries: where `cargo` exists this script builds them first (ci/gpu-check-build.sh, not
# counted in the budget); else it runs the prebuilt ones of target/gpu-check/bins.tar.xz
# (made by ci/gpu-check-build.sh on a machine with cargo and carried along; see
# ci/README.md), unpacked under ${TMPDIR:-/tmp}/lmf-gpu-check-bin.
#
# Output, all under $OUT (default ./gpu-check-out), at most 4 files (the device tool brings
# back 8 files at most, so the kernel cache is packed into one archive):
#   gpu-check.log         everything printed
#   results.jsonl         one JSON line per test binary and per measurement
#   table.md              the table
#   kernel-cache.tar.gz   the NVRTC kernel cache (LMF_KERNEL_CACHE) of this run
#
# Exit status: 0 when every GPU test binary passed, 1 when one failed (the benchmarks and the
# table still run), 2 when there is nothing to run.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
QUICK=""
for a in "$@"; do
  case "$a" in
    --quick) QUICK=--quick ;;
    *) echo "usage: ci/gpu-check.sh [--quick]" >&2; exit 2 ;;
  esac
done
OUT=${OUT:-$ROOT/gpu-check-out}
mkdir -p "$OUT" || exit 2
OUT=$(cd "$OUT" && pwd)
LOG=$OUT/gpu-check.log
RESULTS=$OUT/results.jsonl
TABLE=$OUT/table.md
ARCHIVE=$ROOT/target/gpu-check/bins.tar.xz
BIN=${TMPDIR:-/tmp}/lmf-gpu-check-bin
BUDGET=${GPU_CHECK_BUDGET:-465}

say() { echo "== gpu-check [+$((SECONDS - START))s]: $*"; }

# Seconds for a step: at most $1, leaving $2 for the steps after it, at least 10.
step_timeout() {
  local left=$((BUDGET - (SECONDS - START) - $2))
  local t=$1
  [ "$left" -lt "$t" ] && t=$left
  [ "$t" -lt 10 ] && t=10
  echo "$t"
}

# LD_LIBRARY_PATH for libnvrtc, libcublasLt and libcublas (CUDA 13): the toolkit first
# (/usr/local/cuda matches the driver), then the nvidia-* Python wheels (PyTorch's), then the
# PyPI wheels of ci/cuda-wheels.sh ($LMF_CUDA_WHEELS). LMF_CUDA_INCLUDE for cuda_bf16.h.
setup_cuda_env() {
  local dirs=() d p f lib found add=""
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    [ -d "$d" ] && dirs+=("$d")
  done
  local nv_paths
  nv_paths=$(python3 -c 'import nvidia, os; print("\n".join(os.path.abspath(p) for p in nvidia.__path__))' 2>/dev/null || true)
  while IFS= read -r p; do
    [ -n "$p" ] || continue
    while IFS= read -r f; do
      dirs+=("$(dirname "$f")")
    done < <(find "$p" -maxdepth 4 \( -name 'libnvrtc.so.13*' -o -name 'libcublasLt.so.13*' -o -name 'libcublas.so.13*' \) 2>/dev/null | sort)
    # The wheels' site-packages folder: nvrtc.rs finds nvidia/cu13/include under it.
    if [ -z "${LMF_CUDA_WHEELS:-}" ] && [ -d "$p/cu13/include" ]; then
      export LMF_CUDA_WHEELS=${p%/nvidia}
    fi
  done <<<"$nv_paths"
  [ -n "${LMF_CUDA_WHEELS:-}" ] && dirs+=("$LMF_CUDA_WHEELS/nvidia/cu13/lib")
  for lib in libnvrtc.so.13 libcublasLt.so.13 libcublas.so.13; do
    found=""
    for d in "${dirs[@]}"; do
      if [ -e "$d/$lib" ]; then
        found=$d
        break
      fi
    done
    if [ -n "$found" ]; then
      echo "  $lib: $found"
      case ":$add:" in *":$found:"*) ;; *) add=${add:+$add:}$found ;; esac
    else
      echo "  $lib: NOT FOUND (kernels needing it will fail)"
    fi
  done
  [ -n "$add" ] && export LD_LIBRARY_PATH=$add${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  if [ -z "${LMF_CUDA_INCLUDE:-}" ]; then
    local inc=""
    for d in /usr/local/cuda/include ${LMF_CUDA_WHEELS:+"$LMF_CUDA_WHEELS/nvidia/cu13/include"}; do
      if [ -e "$d/cuda_bf16.h" ]; then
        inc=$d
        [ -d "$d/cccl" ] && inc=$inc:$d/cccl
        break
      fi
    done
    [ -n "$inc" ] && export LMF_CUDA_INCLUDE=$inc
  fi
  export LMF_KERNEL_CACHE=$OUT/kernel-cache
  echo "  LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
  echo "  LMF_CUDA_INCLUDE=${LMF_CUDA_INCLUDE:-} LMF_CUDA_WHEELS=${LMF_CUDA_WHEELS:-}"
  echo "  LMF_KERNEL_CACHE=$LMF_KERNEL_CACHE"
}

# Runs one test binary; appends its summary line to $RESULTS. Returns 1 if it failed.
run_test() {
  local bin=$1 name tmp rc passed failed skipped t
  name=$(basename "$bin")
  tmp=$(mktemp)
  t=$(step_timeout 90 220)
  say "test $name (timeout ${t}s)"
  timeout -k 5 "$t" "$bin" --test-threads=1 --nocapture >"$tmp" 2>&1
  rc=$?
  cat "$tmp"
  passed=$(grep '^test result:' "$tmp" | grep -oE '[0-9]+ passed' | awk '{s += $1} END {print s + 0}')
  failed=$(grep '^test result:' "$tmp" | grep -oE '[0-9]+ failed' | awk '{s += $1} END {print s + 0}')
  skipped=$(grep -c 'skipped: no CUDA device' "$tmp")
  rm -f "$tmp"
  [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ] && say "$name exited $rc without a failed test (crash or timeout)"
  printf '{"impl":"test","binary":"%s","passed":%d,"failed":%d,"skipped":%d,"rc":%d}\n' \
    "$name" "$passed" "$failed" "$skipped" "$rc" >>"$RESULTS"
  [ "$rc" -eq 0 ] && [ "$failed" -eq 0 ]
}

# One JSON line for the table, for a measurement that could not be made.
missing() { # impl key status reason
  printf '{"impl":"%s","key":"%s","value":null,"status":"%s","reason":"%s"}\n' "$1" "$2" "$3" "$4" |
    tee -a "$RESULTS"
}

# The preference stages end to end on cuda:0 against LLaMA-Factory's CPU runs (fp32 on both
# sides): ci/gpu_pref_parity.py writes one test line; skipped where no GPU is seen.
run_pref_parity() {
  local t rc
  if ! nvidia-smi -L >/dev/null 2>&1; then
    say "pref_parity: skipped (nvidia-smi sees no GPU)"
    printf '{"impl":"test","binary":"pref_parity","passed":0,"failed":0,"skipped":1,"rc":0}\n' >>"$RESULTS"
    return 0
  fi
  t=$(step_timeout 60 200)
  say "pref_parity: lmf train rm/dpo/kto on cuda:0 (timeout ${t}s)"
  LMF_DEVICE=cuda:0 timeout -k 5 "$t" python3 ci/gpu_pref_parity.py "$BIN/lmf" | tee -a "$RESULTS"
  rc=${PIPESTATUS[0]}
  if [ "$rc" -ne 0 ] && ! grep -q '"binary": "pref_parity"' "$RESULTS"; then
    printf '{"impl":"test","binary":"pref_parity","passed":0,"failed":1,"skipped":0,"rc":%d}\n' "$rc" >>"$RESULTS"
  fi
  [ "$rc" -eq 0 ]
}

# The end-to-end LoRA step, both sides on the same model folder and text (bench/gpu/).
run_e2e() {
  local w=${TMPDIR:-/tmp}/lmf-gpu-check-e2e t impl
  rm -rf "$w" && mkdir -p "$w"
  t=$(step_timeout 120 60)
  say "e2e: lmf init of a Llama-3.2-1B-shaped model (timeout ${t}s)"
  python3 bench/gpu/make_text.py "$w/text.jsonl" 2000 &&
    timeout -k 5 "$t" "$BIN/lmf" init "$w/model" --dataset_dir data --hidden_size 2048 \
      --intermediate_size 8192 --num_hidden_layers 16 --num_attention_heads 32 \
      --num_key_value_heads 8 --pad_vocab_to 128256 --tie_word_embeddings
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    say "e2e: lmf init failed (exit $rc$([ "$rc" -eq 124 ] && echo ': timeout'))"
    for impl in lmf torch; do
      missing "$impl" e2e_lora_tok_s error "lmf init of the benchmark model failed (exit $rc)"
    done
    rm -rf "$w"
    return
  fi
  if python3 -c 'import torch, transformers, peft' 2>/dev/null; then
    t=$(step_timeout 90 30)
    say "e2e: transformers+peft (timeout ${t}s)"
    PYTHONUNBUFFERED=1 timeout -k 5 "$t" python3 bench/gpu/e2e_lora_torch.py "$w/model" \
      "$w/text.jsonl" | tee -a "$RESULTS"
    [ "${PIPESTATUS[0]}" -eq 0 ] || missing torch e2e_lora_tok_s error "e2e_lora_torch.py failed (see log)"
  else
    missing torch e2e_lora_tok_s n/a "python3 lacks torch/transformers/peft"
  fi
  # An lmf that ignores LMF_DEVICE trains on the CPU: its number would be no GPU number.
  if ! grep -aq LMF_DEVICE "$BIN/lmf"; then
    say "e2e: this lmf has no LMF_DEVICE (no CUDA training): lmf side n/a"
    missing lmf e2e_lora_tok_s n/a "lmf GPU training not wired yet"
  else
    t=$(step_timeout 200 5)
    say "e2e: lmf train on cuda:0 (timeout ${t}s)"
    timeout -k 5 "$t" bash bench/gpu/e2e_lora_lmf.sh "$BIN/lmf" "$w/model" "$w/text.jsonl" \
      "$w/lmf" | tee -a "$RESULTS"
    if [ "${PIPESTATUS[0]}" -ne 0 ]; then
      tail -n 20 "$w"/lmf/e2e-*.log 2>/dev/null
      missing lmf e2e_lora_tok_s error "lmf train on cuda:0 failed or timed out (see log)"
    fi
  fi
  rm -rf "$w"
}

main() {
  say "$(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(uname -m), budget ${BUDGET}s ${QUICK}"
  command -v nvidia-smi >/dev/null && nvidia-smi -L
  if command -v cargo >/dev/null; then
    say "cargo found: building"
    ci/gpu-check-build.sh || { say "build FAILED"; return 2; }
  fi
  if [ ! -f "$ARCHIVE" ]; then
    say "no $ARCHIVE: run ci/gpu-check-build.sh on a machine with cargo and carry target/gpu-check"
    return 2
  fi
  rm -rf "$BIN" && mkdir -p "$BIN" || return 2
  python3 - "$ARCHIVE" "$BIN" <<'PY' || { say "cannot unpack $ARCHIVE"; return 2; }
import sys, tarfile
with tarfile.open(sys.argv[1]) as t:
    try:
        t.extractall(sys.argv[2], filter="data")
    except TypeError:  # Python < 3.12
        t.extractall(sys.argv[2])
PY
  chmod +x "$BIN"/gpu_bench "$BIN"/lmf "$BIN"/tests/* 2>/dev/null
  if [ ! -x "$BIN/gpu_bench" ] || [ ! -x "$BIN/lmf" ]; then
    say "$ARCHIVE holds no gpu_bench or lmf: rebuild it with ci/gpu-check-build.sh"
    return 2
  fi
  say "binaries: $(cd "$BIN" && ls gpu_bench lmf tests/* | tr '\n' ' ')"
  START=$SECONDS
  say "environment"
  setup_cuda_env

  local status=0 bin t
  shopt -s nullglob
  local bins=("$BIN"/tests/gpu_*)
  [ ${#bins[@]} -eq 0 ] && say "no GPU test binaries in $BIN/tests"
  for bin in "${bins[@]}"; do
    run_test "$bin" || status=1
  done

  run_pref_parity || status=1

  t=$(step_timeout 150 130)
  say "gpu_bench $QUICK (timeout ${t}s)"
  # JSON lines to the results and the log; progress (stderr) to the log.
  timeout -k 5 "$t" "$BIN/gpu_bench" $QUICK | tee -a "$RESULTS"
  say "gpu_bench exit ${PIPESTATUS[0]}"

  if python3 -c 'import torch' 2>/dev/null; then
    t=$(step_timeout 100 90)
    say "torch_ref.py $QUICK (timeout ${t}s)"
    PYTHONUNBUFFERED=1 timeout -k 5 "$t" python3 bench/gpu/torch_ref.py $QUICK | tee -a "$RESULTS"
    say "torch_ref.py exit ${PIPESTATUS[0]}"
  else
    say "python3 has no torch: no PyTorch column"
  fi

  case "${GPU_CHECK_E2E:-auto}" in
    0) say "e2e: skipped (GPU_CHECK_E2E=0)" ;;
    1) run_e2e ;;
    *)
      if nvidia-smi -L >/dev/null 2>&1 ||
        python3 -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
        run_e2e
      else
        say "e2e: skipped (no GPU seen by nvidia-smi or torch; GPU_CHECK_E2E=1 forces it)"
        missing lmf e2e_lora_tok_s n/a "no CUDA device"
        missing torch e2e_lora_tok_s n/a "no CUDA device"
      fi
      ;;
  esac

  if [ -d "$OUT/kernel-cache" ]; then
    tar -czf "$OUT/kernel-cache.tar.gz" -C "$OUT" kernel-cache && rm -rf "$OUT/kernel-cache"
  fi
  say "done in $((SECONDS - START)) s (tests $([ $status -eq 0 ] && echo passed || echo FAILED))"
  echo
  python3 ci/gpu_table.py "$RESULTS" | tee "$TABLE"
  return $status
}

: >"$RESULTS"
START=$SECONDS
main 2>&1 | tee "$LOG"
exit "${PIPESTATUS[0]}"
