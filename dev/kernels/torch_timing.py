"""CUDA-event timing for the dev/kernels torch scripts (run on the device machine)."""
import torch


def ms(f, reps=20):
    """Median milliseconds of f() over reps runs, after one untimed run."""
    f()
    torch.cuda.synchronize()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(reps):
        e0.record()
        f()
        e1.record()
        torch.cuda.synchronize()
        times.append(e0.elapsed_time(e1))
    times.sort()
    return times[len(times) // 2]
