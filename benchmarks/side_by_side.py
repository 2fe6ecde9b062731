"""Time this project's PCRLv2 training step and the released code's side by side (3D or 2D).

Speed claims between this project and the released code (RL4M/PCRLv2, MIT) mean something
only as ratios measured in one run on one machine: machines of the same kind differ about
2x. This script alternates the two measurements ``--rounds`` times, each in its own process
(so each peak memory is its own), and prints one JSON line: both medians, both peak
memories, the speed-up (released / ours) and the memory ratio (ours / released).

- ours: ``benchmarks/pretrain_step.py`` (default: batch 4 in 3D, 8 in 2D, bf16, the
  official preset).
- released, 3D: ``time_official.py`` in ``--official`` (default ``$PCRL_OFFICIAL_PCRLV2``),
  a folder holding the released ``train_3d.py`` and model with a timing script that prints
  ``{"median_s", "peak_rss_mb", ...}`` (fp32, as released).
- released, 2D (``--dim 2``): ``benchmarks/released_2d_step.py``, the released 2D model and
  step rebuilt from torchvision (the released one needs segmentation_models_pytorch, whose
  ResNet-18 encoder is torchvision's), fp32, the same batch.

    python benchmarks/side_by_side.py --official DIR --rounds 2 --steps 3
    python benchmarks/side_by_side.py --dim 2 --rounds 2 --steps 3

Exit code 2 (with a message) when the released code's folder or its timing script is missing
or a measurement prints no JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
BATCH = {3: 4, 2: 8}


def ours_default(dim: int, batch: int) -> str:
    """``pretrain_step.py``'s arguments for this project's side."""
    return f"--dim {dim} --batch {batch} --dtype bf16 --preset official"


def last_json(stdout: str, what: str) -> dict:
    """The last line of ``stdout`` that parses as a JSON object; ``what`` names the program
    in the error."""
    for line in reversed(stdout.strip().splitlines()):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            return record
    raise ValueError(f"{what} printed no JSON line")


def summarize(ours: Sequence[dict], released: Sequence[dict]) -> dict:
    """Medians over rounds of each side's ``median_s`` and ``peak_rss_mb``, and the ratios:
    ``speedup = released_s / ours_s`` (> 1: ours is faster) and ``memory_ratio =
    ours_mb / released_mb`` (< 1: ours needs less)."""
    if not ours or not released:
        raise ValueError("summarize needs at least one round of each side")
    ours_s = statistics.median(r["median_s"] for r in ours)
    released_s = statistics.median(r["median_s"] for r in released)
    ours_mb = statistics.median(r["peak_rss_mb"] for r in ours)
    released_mb = statistics.median(r["peak_rss_mb"] for r in released)
    return {
        "ours_s": round(ours_s, 3),
        "released_s": round(released_s, 3),
        "speedup": round(released_s / ours_s, 2),
        "ours_peak_mb": round(ours_mb, 1),
        "released_peak_mb": round(released_mb, 1),
        "memory_ratio": round(ours_mb / released_mb, 2),
        "rounds": len(ours),
        "ours_rounds_s": [r["median_s"] for r in ours],
        "released_rounds_s": [r["median_s"] for r in released],
    }


def _measure(cmd: list[str], what: str) -> dict:
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        tail = out.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise ValueError(f"{what} failed with exit code {out.returncode}: {tail[0]}")
    return last_json(out.stdout, what)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, choices=(2, 3), default=3)
    parser.add_argument(
        "--official",
        default=os.environ.get("PCRL_OFFICIAL_PCRLV2", ""),
        help="3D: folder of the released code and its time_official.py "
        "(default: $PCRL_OFFICIAL_PCRLV2)",
    )
    parser.add_argument("--batch", type=int, default=None, help="default: 4 (3D), 8 (2D)")
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the two sides")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per measurement")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--ours-args",
        default=None,
        help="arguments of benchmarks/pretrain_step.py (default: --dim D --batch B --dtype "
        "bf16 --preset official)",
    )
    args = parser.parse_args(argv)
    batch = args.batch or BATCH[args.dim]
    ours_args = args.ours_args or ours_default(args.dim, batch)
    threads = ["--threads", str(args.threads)]
    if args.dim == 3:
        timer = Path(args.official) / "time_official.py" if args.official else None
        if timer is None or not timer.is_file():
            print(
                f"error: no released timing script at {timer or '(unset)'}: pass --official "
                "DIR or set PCRL_OFFICIAL_PCRLV2",
                file=sys.stderr,
            )
            return 2
        released_cmd = [sys.executable, str(timer)]
    else:
        timer = HERE / "released_2d_step.py"
        released_cmd = [sys.executable, str(timer), "--batch", str(batch)]
    ours_cmd = [sys.executable, str(HERE / "pretrain_step.py"), *ours_args.split()]
    ours_cmd += ["--steps", str(args.steps), *threads]
    released_cmd += ["--steps", str(args.steps), *threads]
    ours, released = [], []
    try:
        for _ in range(args.rounds):
            ours.append(_measure(ours_cmd, "pretrain_step.py"))
            released.append(_measure(released_cmd, str(timer)))
        result = summarize(ours, released)
    except (ValueError, KeyError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        json.dumps(
            {
                "benchmark": f"side_by_side_{args.dim}d_step",
                **result,
                "ours_args": ours_args,
                "steps": args.steps,
                "threads": args.threads,
                "torch": ours[0].get("torch"),
                "cpu": platform.processor() or platform.machine(),
                "cores": os.cpu_count(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
