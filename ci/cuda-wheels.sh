#!/usr/bin/env bash
# Installs NVRTC and the CUDA headers from PyPI (no GPU, no CUDA toolkit needed) into a cache
# folder, for the kernel compile check. Source it: it exports LD_LIBRARY_PATH (libnvrtc),
# LMF_CUDA_WHEELS (where nvrtc.rs finds cuda_bf16.h and cccl) and LMF_REQUIRE_NVRTC=1 (so the
# compile check fails instead of skipping if NVRTC still cannot be loaded).
# Pinned to CUDA 13.0: the oldest CUDA we target (PTX from a newer NVRTC may be refused by a
# 13.0 driver).
set -euo pipefail
LMF_CUDA_WHEELS="${LMF_CUDA_WHEELS:-$HOME/.cache/lmf/cuda-wheels}"
if [ ! -f "$LMF_CUDA_WHEELS/nvidia/cu13/lib/libnvrtc.so.13" ] || [ ! -f "$LMF_CUDA_WHEELS/nvidia/cu13/include/cuda_bf16.h" ]; then
  python3 -m pip install --quiet --disable-pip-version-check --target "$LMF_CUDA_WHEELS" \
    "nvidia-cuda-nvrtc==13.0.*" "nvidia-cuda-runtime==13.0.*" "nvidia-cuda-cccl==13.0.*"
fi
export LMF_CUDA_WHEELS
export LD_LIBRARY_PATH="$LMF_CUDA_WHEELS/nvidia/cu13/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export LMF_REQUIRE_NVRTC=1
set +euo pipefail
