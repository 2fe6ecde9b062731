"""Time this project's 3D PCRLv2 training step and the released code's side by side.

Speed claims between this project and the released code (RL4M/PCRLv2, MIT) mean something
only as ratios measured in one run on one machine: machines of the same kind differ about
2x. This script alternates the two measurements ``--rounds`` times, each in its own process
(so each peak memory is its own), and prints one JSON line: both medians, both peak
memories, the speed-up (released / ours) and the memory ratio (ours / released).

- ours: ``benchmarks/pretrain_step.py`` (default: 3D, batch 4, bf16, the official preset).
- released: ``time_official.py`` in ``--official`` (default ``$PCRL_OFFICIAL_PCRLV2``), a
  folder holding the released ``train_3d.py`` and model with a timing script that prints
  ``{"median_s", "peak_rss_mb", ...}`` (fp32, as released).

    python benchmarks/side_by_side.py --official DIR --rounds 2 --steps 3

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
OURS_DEFAULT = ["--dim", "3", "--batch", "4", "--dtype", "bf16", "--preset", "official"]


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
    parser.add_argument(
        "--official",
        default=os.environ.get("PCRL_OFFICIAL_PCRLV2", ""),
        help="folder of the released code and its time_official.py "
        "(default: $PCRL_OFFICIAL_PCRLV2)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the two sides")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per measurement")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--ours-args",
        default=" ".join(OURS_DEFAULT),
        help="arguments of benchmarks/pretrain_step.py (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    timer = Path(args.official) / "time_official.py" if args.official else None
    if timer is None or not timer.is_file():
        print(
            f"error: no released timing script at {timer or '(unset)'}: pass --official DIR "
            "or set PCRL_OFFICIAL_PCRLV2",
            file=sys.stderr,
        )
        return 2
    threads = ["--threads", str(args.threads)]
    ours_cmd = [sys.executable, str(HERE / "pretrain_step.py"), *args.ours_args.split()]
    ours_cmd += ["--steps", str(args.steps), *threads]
    released_cmd = [sys.executable, str(timer), "--steps", str(args.steps), *threads]
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
                "benchmark": "side_by_side_3d_step",
                **result,
                "ours_args": args.ours_args,
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
