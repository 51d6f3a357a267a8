#!/usr/bin/env bash
# Our f32 and bf16 matmuls against PyTorch's torch.matmul on the same shapes, measured in one run
# (bf16: lmf's gemm_bf16, bf16 inputs with f32 accumulation and output; torch's bf16 matmul).
# usage: bench/scripts/matmul_vs_torch.sh [PYTHON]   (PYTHON: an interpreter with torch;
# default: the reference venv of ../shared/tools/reference-venv.sh, else python3)
set -euo pipefail
cd "$(dirname "$0")/../.."
py=${1:-$HOME/.cache/lmf-reference-venv/bin/python}
[ -x "$py" ] || py=python3
threads=$(nproc)
cargo build --release -q -p lmf-bench --bin matmul_gflops
for dt in f32 bf16; do
  ours=$(RAYON_NUM_THREADS=$threads target/release/matmul_gflops "$dt")
  if theirs=$(echo "$ours" | OMP_NUM_THREADS=$threads "$py" bench/scripts/torch_matmul.py "$dt" 2>/dev/null); then :; else
    theirs=""; echo "(no torch in $py: PyTorch column left empty)"; fi
  echo "== $dt"
  printf '%-18s %12s %12s %8s\n' "m x k x n" "lmf GFLOP/s" "torch GFLOP/s" "ratio"
  paste <(echo "$ours") <(echo "${theirs:-}") | while read -r m k n g _ _ _ tg; do
    ratio=$([ -n "${tg:-}" ] && awk "BEGIN{printf \"%.2f\", $g/$tg}" || echo "-")
    printf '%-18s %12s %12s %8s\n' "${m}x${k}x${n}" "$g" "${tg:--}" "$ratio"
  done
done
