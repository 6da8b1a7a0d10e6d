#!/usr/bin/env python3
"""The isolated op's six TF32 products at d = C = 2048 and 4096 (16384 tokens), each in the
layout spd.c runs it now and in the layouts a transposed copy of a * mask (amT [C, N]) or of
g_a (gT [C, N]) would allow. cuBLAS through torch.mm (its heuristic's first pick).
"MN" = the reduced index is an operand's slow one; TF32 wgmma reads only K-major tiles.
Usage (device machine): python3 product_layouts.py
"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from torch_timing import ms  # noqa: E402

torch.backends.cuda.matmul.allow_tf32 = True


def main():
    print(torch.cuda.get_device_name(), "torch", torch.__version__)
    N = 16384
    for d in (2048, 4096):
        C = d
        g = lambda *s: torch.randn(*s, device="cuda")
        x, V, U, dout = g(N, d), g(d, C), g(C, d), g(N, d)
        am, gg = g(N, C), g(N, C)
        amT, gT, Ut, doutT = am.t().contiguous(), gg.t().contiguous(), U.t().contiguous(), dout.t().contiguous()
        flop = 2.0 * N * d * C
        rows = [
            ("a = x V            (A K, B MN) now", lambda: torch.mm(x, V)),
            ("out = am U         (A K, B MN) now", lambda: torch.mm(am, U)),
            ("out = amT^T Ut^T   (A MN, B K)", lambda: torch.mm(amT.t(), Ut.t())),
            ("out = amT^T U      (A MN, B MN)", lambda: torch.mm(amT.t(), U)),
            ("h = dout U^T       (A K, B K) now", lambda: torch.mm(dout, U.t())),
            ("h = doutT^T U^T    (A MN, B K)", lambda: torch.mm(doutT.t(), U.t())),
            ("dU = am^T dout     (MN, MN) now", lambda: torch.mm(am.t(), dout)),
            ("dU = amT dout      (A K, B MN)", lambda: torch.mm(amT, dout)),
            ("dU = am^T doutT^T  (A MN, B K)", lambda: torch.mm(am.t(), doutT.t())),
            ("dV = x^T g         (MN, MN) now", lambda: torch.mm(x.t(), gg)),
            ("dV = x^T gT^T      (A MN, B K)", lambda: torch.mm(x.t(), gT.t())),
            ("dx = g V^T         (A K, B K) now", lambda: torch.mm(gg, V.t())),
            ("dx = gT^T V^T      (A MN, B K)", lambda: torch.mm(gT.t(), V.t())),
        ]
        print(f"d = C = {d}, N = {N}: {flop / 1e9:.1f} GFLOP per product")
        for name, f in rows:
            t = ms(f)
            print(f"  {name:40s} {t:8.4f} ms {flop / t / 1e9:6.0f} TFLOP/s")
        print(f"  U^T copy {ms(lambda: U.t().contiguous()):.4f} ms, am^T copy {ms(lambda: am.t().contiguous()):.4f} ms,"
              f" am * mask {ms(lambda: am * gg):.4f} ms")


if __name__ == "__main__":
    main()
