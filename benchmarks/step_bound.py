"""How fast the 3D training step could be on this CPU: FLOPs per step and convolution rates.

The side-by-side speed-up (``side_by_side.py``) is bounded by arithmetic: a step cannot take
less than its floating-point work divided by the fastest rate the CPU's convolutions reach.
This script measures, in one run on one machine:

- the FLOPs of one training step of each side, counted with ``torch.utils.flop_counter``
  (forward and backward): this project's PCRLv2 step (official preset, batch 4, two
  64x64x32 globals, six 16^3 locals; averaged over ``--steps`` steps, whose random scale
  draws change the work) and the released ``train_3d.train_pcrlv2_inner`` (fp32);
- the rate (multiply-adds per second, forward + both backward products) of the step's
  largest convolution - 64 -> 64 channels, 3^3, batch 4 at 64x64x32 - in fp32 (the
  released code's precision and layout) and in bf16 with channels-last (this project's);
- both steps' times in the same run (``--steps`` each, after a warm-up), so the measured
  speed-up sits beside its ceilings: ``released_s / ours_floor_s``, the speed-up if all of
  this project's FLOPs ran as fast as the largest convolution does in bf16 (small layers,
  batch norm and element-wise work run slower), and ``released_floor_s / ours_floor_s``,
  both sides at their largest convolution's rate.

    python benchmarks/step_bound.py --official ../shared/official_pcrlv2 --threads 2

Prints one JSON line. Exit code 2 (with a message) when the released code's folder lacks
``train_3d.py`` or its model.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import random
import statistics
import sys
import time
import types
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from pcrl_lib.methods import PCRLv2, pcrlv2_config
from pcrl_lib.perf import autocast_context, machine_description, to_channels_last

HERE = Path(__file__).resolve().parent
#: the largest convolution of the 3D step: (batch, channels, *spatial), kernel 3^3
LARGEST_CONV = (4, 64, 64, 64, 32)


def conv_macs(shape: tuple[int, ...] = LARGEST_CONV) -> int:
    """Multiply-adds of a forward pass of a same-padded 3^3 convolution with as many input as
    output channels on ``(B, C, *S)``: ``B * prod(S) * C * C * 27``."""
    b, c, *spatial = shape
    return b * math.prod(spatial) * c * c * 27


def conv_rate(dtype: str, shape: tuple[int, ...] = LARGEST_CONV, repeats: int = 3) -> float:
    """Multiply-adds per second of one forward and backward (input and weight gradients, 3x
    the forward's work) of the 3^3 convolution on ``shape``: fp32 contiguous, or bf16
    autocast with channels-last. Median over ``repeats`` after one warm-up."""
    torch.manual_seed(0)
    x = torch.randn(shape, requires_grad=True)
    w = torch.randn(shape[1], shape[1], 3, 3, 3, requires_grad=True)
    if dtype == "bf16":
        x = x.detach().to(memory_format=torch.channels_last_3d).requires_grad_()
        w = w.detach().to(memory_format=torch.channels_last_3d).requires_grad_()
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        with autocast_context(dtype):
            y = F.conv3d(x, w, padding=1)
        y.float().sum().backward()
        if i:
            times.append(time.perf_counter() - start)
    return 3 * conv_macs(shape) / statistics.median(times)


def ours_steps(steps: int) -> tuple[list[int], list[float]]:
    """FLOPs and seconds of each of ``steps`` PCRLv2 training steps (forward and backward of
    benchmarks/pretrain_step.py's step, after one warm-up; the counter's overhead - a Python
    call per operator - is included and small against seconds-long steps)."""
    sys.path.insert(0, str(HERE))
    from pretrain_step import make_batch

    torch.manual_seed(0)
    model = to_channels_last(PCRLv2(pcrlv2_config("official", 3, checkpoint="encoder")))
    model.train()
    data = make_batch(3, 4, 6, torch.float32)
    flops, seconds = [], []
    for i in range(steps + 1):
        start = time.perf_counter()
        with FlopCounterMode(display=False) as counter:
            with autocast_context("bf16"):
                loss = model(data, progress=0.5)["loss"]
            loss.backward()
        model.zero_grad(set_to_none=True)
        if i:
            flops.append(counter.get_total_flops())
            seconds.append(time.perf_counter() - start)
    return flops, seconds


def released_steps(official: Path, steps: int) -> tuple[list[int], list[float]]:
    """FLOPs and seconds of ``steps`` released 3D training steps (``train_pcrlv2_inner``,
    batch 4, fp32, its optimiser step included), after one warm-up."""
    spec = importlib.util.spec_from_file_location(
        "off3d", official / "models" / "pcrlv2_model_3d.py"
    )
    off3d = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(off3d)
    sys.modules["models"] = types.SimpleNamespace(PCRLv23d=off3d.PCRLv23d)
    sys.path.insert(0, str(official))
    import train_3d

    torch.Tensor.cuda = lambda self, *a, **k: self  # the released step moves tensors to CUDA
    torch.cuda.synchronize = lambda *a, **k: None  # and waits for it
    random.seed(0)
    torch.manual_seed(0)
    model = off3d.PCRLv23d()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    views = [torch.rand(4, 1, 64, 64, 32) for _ in range(4)]
    batch = (*views, [torch.rand(4, 1, 16, 16, 16) for _ in range(6)])
    flops, seconds = [], []
    for i in range(steps + 1):
        start = time.perf_counter()
        with FlopCounterMode(display=False) as counter:
            train_3d.train_pcrlv2_inner(
                argparse.Namespace(amp=False),
                1,
                [batch],
                model,
                opt,
                torch.nn.MSELoss(),
                torch.nn.CosineSimilarity(),
            )
        if i:
            flops.append(counter.get_total_flops())
            seconds.append(time.perf_counter() - start)
    return flops, seconds


def floor_seconds(flops: float, macs_per_s: float) -> float:
    """The least time ``flops`` (2 per multiply-add) take at ``macs_per_s``."""
    return flops / 2 / macs_per_s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--official",
        default=os.environ.get("PCRL_OFFICIAL_PCRLV2"),
        help="the released code's folder",
    )
    parser.add_argument("--steps", type=int, default=3, help="timed steps of each side")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    official = Path(args.official) if args.official else None
    if (
        official is None
        or not (official / "train_3d.py").is_file()
        or not (official / "models" / "pcrlv2_model_3d.py").is_file()
    ):
        print(
            f"step_bound.py: --official {args.official}: no train_3d.py and models/pcrlv2_model_3d.py there",
            file=sys.stderr,
        )
        return 2
    torch.set_num_threads(args.threads)
    ours_f, ours_s = ours_steps(args.steps)
    released_f, released_s = released_steps(official, args.steps)
    rates = {d: conv_rate(d) for d in ("fp32", "bf16")}
    ours_floor = floor_seconds(statistics.mean(ours_f), rates["bf16"])
    released_floor = floor_seconds(statistics.mean(released_f), rates["fp32"])
    ours_med, released_med = statistics.median(ours_s), statistics.median(released_s)
    record = {
        "benchmark": "step_bound",
        "ours_gflop": [round(f / 1e9, 1) for f in ours_f],
        "released_gflop": [round(f / 1e9, 1) for f in released_f],
        "ours_s": [round(t, 2) for t in ours_s],
        "released_s": [round(t, 2) for t in released_s],
        "speedup": round(released_med / ours_med, 2),
        "conv_gmac_per_s": {d: round(r / 1e9, 1) for d, r in rates.items()},
        "ours_floor_s": round(ours_floor, 2),
        "released_floor_s": round(released_floor, 2),
        "speedup_ceiling": round(released_med / ours_floor, 2),
        "speedup_both_at_ceiling": round(released_floor / ours_floor, 2),
        "threads": args.threads,
        "torch": torch.__version__,
        "machine": machine_description(),
    }
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
