#!/usr/bin/env bash
# The gemm crate is built with `x86-v4` (AVX-512 kernels) and picks its kernel at run time.
# This runs the kernel tests under qemu's user-mode emulation of CPUs without AVX-512
# (Haswell: AVX2 + FMA; Nehalem: SSE4.2 only) to prove the same binary still runs there.
# qemu-user comes from Debian's packages; where it cannot be installed the check is skipped
# with a message (it is a portability check, not a test of the numbers).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v qemu-x86_64 >/dev/null; then
  if command -v apt-get >/dev/null && apt-get install -y -q qemu-user >/dev/null 2>&1; then :; else
    echo "no-avx512 check skipped: qemu-user is not installed and could not be installed"
    exit 0
  fi
fi
for cpu in Haswell Nehalem; do
  echo "== kernel tests on an emulated $cpu (no AVX-512)"
  CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="qemu-x86_64 -cpu $cpu" \
    cargo test -q -p lmf-kernels --lib -- $([ $cpu = Haswell ] && echo "gemm attention simd::exp::tests::row bf16_weight swiglu" || echo cpu::) 2>&1 |
    grep -v "TCG doesn't support"
done
