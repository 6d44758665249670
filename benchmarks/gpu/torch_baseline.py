"""Reference numbers from PyTorch on the same GPU, measured the way gpubench measures (benchmarks/gpu/README).

bf16/fp16 torch.matmul of 8192x8192 by 8192x8192 on uniform random data, 1 s of warm-up, then 10 batches of 20
matmuls each timed with CUDA events; the median batch is the result (FLOP = 2*M*N*K). Device copy: a 2 GiB
tensor copied into another, read+write bytes counted. Prints one JSON object.
"""

import json
import statistics
import time

import torch


def batches(fn, iters=20, n=10):
    out = []
    for _ in range(n):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(iters):
            fn()
        b.record()
        b.synchronize()
        out.append(a.elapsed_time(b) / 1e3 / iters)
    return out


def matmul(dtype, size=8192):
    x = torch.rand(size, size, device="cuda", dtype=dtype) * 2 - 1
    y = torch.rand(size, size, device="cuda", dtype=dtype) * 2 - 1
    end = time.time() + 1.0
    while time.time() < end:
        torch.matmul(x, y)
        torch.cuda.synchronize()
    rates = [2 * size**3 / t / 1e12 for t in batches(lambda: torch.matmul(x, y))]
    return {"tflops": statistics.median(rates), "tflops_best": max(rates), "batches": rates}


def copy(nbytes=2 << 30):
    src = torch.empty(nbytes // 4, device="cuda", dtype=torch.float32).uniform_()
    dst = torch.empty_like(src)
    batches(lambda: dst.copy_(src), iters=3, n=1)
    rates = [2 * nbytes / t / 1e12 for t in batches(lambda: dst.copy_(src))]
    return {"tbps": statistics.median(rates), "tbps_best": max(rates)}


print(json.dumps({"torch": torch.__version__, "cuda": torch.version.cuda, "device": torch.cuda.get_device_name(0),
                  "matmul_bf16_8192": matmul(torch.bfloat16), "matmul_fp16_8192": matmul(torch.float16),
                  "copy_2gib": copy()}, indent=1))
