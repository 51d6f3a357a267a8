"""PyTorch's torch.matmul GFLOP/s on the shapes given as `m k n` lines on stdin: f32, or
bf16 inputs (torch's bf16 matmul, bf16 output) with the argument `bf16`.

Same measurement as bench/src/bin/matmul_gflops.rs: one warm-up, then the best time over
~2 s of repeats, inputs uniform in [-1, 1).
"""
import sys
import time

import torch

dtype = torch.bfloat16 if sys.argv[1:] == ["bf16"] else torch.float32
for line in sys.stdin:
    m, k, n = (int(x) for x in line.split()[:3])
    a = (torch.rand(m, k) * 2 - 1).to(dtype)
    b = (torch.rand(k, n) * 2 - 1).to(dtype)
    torch.matmul(a, b)
    best, start = float("inf"), time.perf_counter()
    while time.perf_counter() - start < 2.0:
        t = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - t)
    print(f"{m} {k} {n} {2 * m * n * k / best / 1e9:.1f}")
