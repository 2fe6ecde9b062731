"""Time one full PCRLv2 pre-training step: forward, backward, optimizer step, all losses.

Prints one JSON line. Each step draws its scales at random (as the method does), and a
step that decodes the full resolution costs more, so time several steps (``--steps``). The
paper's shapes (Sec. 4.3): 3D batch 4 of global pairs
1x64x64x32 plus six 16^3 locals each; 2D batch 8 at 3x224x224 plus six 3x96x96 locals.

    python benchmarks/pretrain_step.py --dim 3 --batch 4 --dtype bf16 --preset official
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import time

import torch

from pcrl_lib.methods import PCRLv2, pcrlv2_config
from pcrl_lib.models.nsunet import CHECKPOINT_CHOICES
from pcrl_lib.perf import autocast_context, effective_dtype, to_channels_last


def make_batch(dim: int, batch: int, n_locals: int, dtype: torch.dtype) -> dict:
    """Random inputs of the paper's shapes."""
    if dim == 3:
        c, g, loc = 1, (64, 64, 32), (16, 16, 16)
    else:
        c, g, loc = 3, (224, 224), (96, 96)
    out = {k: torch.rand(batch, c, *g) for k in ("global1", "global2", "target1", "target2")}
    out["locals"] = torch.rand(batch, n_locals, c, *loc)
    return {k: to_channels_last(v) if k != "locals" else v for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, choices=(2, 3), default=3)
    parser.add_argument("--batch", type=int, default=None, help="default: 4 (3D), 8 (2D)")
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="bf16")
    parser.add_argument("--preset", choices=("paper", "official"), default="official")
    parser.add_argument("--width", type=float, default=1.0, help="3D channel multiplier")
    parser.add_argument("--locals", type=int, default=6)
    parser.add_argument(
        "--steps", type=int, default=8, help="timed steps (the scales are random: use several)"
    )
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--checkpoint",
        choices=CHECKPOINT_CHOICES,
        default="encoder",
        help="recompute full-resolution activations in the backward pass (see NSUNet); "
        "'encoder' (default) gives back the 3D encoder's full-resolution stage for no "
        "measurable time here; the 2D ResNet has no such stage, so 2D runs as 'none'",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    batch = args.batch or (4 if args.dim == 3 else 8)
    overrides = {"width": args.width} if args.dim == 3 else {}
    overrides["checkpoint"] = args.checkpoint
    model = to_channels_last(PCRLv2(pcrlv2_config(args.preset, args.dim, **overrides)))
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9, weight_decay=1e-5)
    data = make_batch(args.dim, batch, args.locals, torch.float32)
    times, losses = [], []
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        with autocast_context(args.dtype):
            out = model(data, progress=0.5)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        losses.append(float(out["loss"].detach()))
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    print(
        json.dumps(
            {
                "benchmark": "pretrain_step",
                "median_s": round(statistics.median(times), 3),
                "mean_s": round(statistics.mean(times), 3),
                "min_s": round(min(times), 3),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "dim": args.dim,
                "batch": batch,
                "dtype": args.dtype,
                "dtype_used": effective_dtype(args.dtype),  # fp32 on a CPU without native bf16
                "preset": args.preset,
                "width": args.width if args.dim == 3 else None,
                "locals": args.locals,
                "checkpoint": args.checkpoint,
                "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
                "threads": args.threads,
                "steps": args.steps,
                "losses": [round(v, 4) for v in losses],
                "torch": torch.__version__,
                "cpu": platform.processor() or platform.machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
