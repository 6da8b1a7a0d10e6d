#!/usr/bin/env python3
"""Weight-gradient products in TF32: how much the operands' layout costs on cuBLAS.

A weight gradient reduces over the tokens: dW [P, Q] = A^T B with A [M, P] and B [M, Q]
row-major, so both operands have the reduced index as their slow one ("MN-major"), which
TF32 wgmma cannot read from shared memory. Timed against the same product with the
operands stored transposed (At [P, M], Bt [Q, M]: "K-major", dW = At Bt^T), and against
the transposes themselves. torch.mm calls cuBLAS with its heuristic's first choice.
Usage (device machine): python3 layout_bench.py
"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from torch_timing import ms  # noqa: E402

torch.backends.cuda.matmul.allow_tf32 = True


def main():
    print(torch.cuda.get_device_name(), "torch", torch.__version__)
    M = 16384
    shapes = [(1200, 341), (1200, 344), (128, 1200), (344, 1200), (1200, 128), (2048, 2048), (4096, 4096)]
    print(f"{'P x Q (K = M = %d)' % M:>24} {'MN-major ms':>12} {'TF/s':>6} {'K-major ms':>11} {'TF/s':>6}"
          f" {'A^T copy ms':>12} {'B^T copy ms':>12}")
    for P, Q in shapes:
        A = torch.randn(M, P, device="cuda")
        B = torch.randn(M, Q, device="cuda")
        At, Bt = A.t().contiguous(), B.t().contiguous()
        flop = 2.0 * M * P * Q
        t_mn = ms(lambda: torch.mm(A.t(), B))
        t_k = ms(lambda: torch.mm(At, Bt.t()))
        t_ta = ms(lambda: A.t().contiguous())
        t_tb = ms(lambda: B.t().contiguous())
        err = (torch.mm(A.t(), B) - torch.mm(At, Bt.t())).abs().max().item()
        print(f"{P:>11} x {Q:<11} {t_mn:12.4f} {flop / t_mn / 1e9:6.0f} {t_k:11.4f} {flop / t_k / 1e9:6.0f}"
              f" {t_ta:12.4f} {t_tb:12.4f}   (max diff {err:.2g})")


if __name__ == "__main__":
    main()
