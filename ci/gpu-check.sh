#!/usr/bin/env bash
# The one command for a machine with an NVIDIA GPU: runs every GPU test binary (each compares
# a CUDA kernel with its CPU twin), then the benchmarks (bench/src/bin/gpu_bench.rs and
# PyTorch's numbers on the same shapes, bench/gpu/torch_ref.py), then prints ONE markdown
# table. Meant to finish in under 8 minutes (budget GPU_CHECK_BUDGET, default 450 s, split
# among the steps with `timeout`).
#
#   ci/gpu-check.sh [--quick]          --quick: 1 warm-up + 3 timed iterations per bench
#
# Binaries: where `cargo` exists this script builds them first (ci/gpu-check-build.sh, not
# counted in the budget); else it runs the prebuilt ones in target/gpu-check/ (made by
# ci/gpu-check-build.sh on a machine with cargo and carried along; see ci/README.md).
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
BIN=$ROOT/target/gpu-check
BUDGET=${GPU_CHECK_BUDGET:-450}

say() { echo "== gpu-check: $*"; }

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
  t=$(step_timeout 120 150)
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

main() {
  say "$(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(uname -m), budget ${BUDGET}s ${QUICK}"
  command -v nvidia-smi >/dev/null && nvidia-smi -L
  if command -v cargo >/dev/null; then
    say "cargo found: building"
    ci/gpu-check-build.sh || { say "build FAILED"; return 2; }
  fi
  # (A copied tree may lose the executable bits.)
  chmod +x "$BIN"/gpu_bench "$BIN"/tests/* 2>/dev/null
  if [ ! -x "$BIN/gpu_bench" ]; then
    say "no $BIN/gpu_bench: run ci/gpu-check-build.sh on a machine with cargo and carry target/gpu-check"
    return 2
  fi
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

  t=$(step_timeout 200 100)
  say "gpu_bench $QUICK (timeout ${t}s)"
  # JSON lines to the results and the log; progress (stderr) to the log.
  timeout -k 5 "$t" "$BIN/gpu_bench" $QUICK | tee -a "$RESULTS"
  say "gpu_bench exit ${PIPESTATUS[0]}"

  if python3 -c 'import torch' 2>/dev/null; then
    t=$(step_timeout 200 5)
    say "torch_ref.py $QUICK (timeout ${t}s)"
    PYTHONUNBUFFERED=1 timeout -k 5 "$t" python3 bench/gpu/torch_ref.py $QUICK | tee -a "$RESULTS"
    say "torch_ref.py exit ${PIPESTATUS[0]}"
  else
    say "python3 has no torch: no PyTorch column"
  fi

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
