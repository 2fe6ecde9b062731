"""The bootstrap's AUROC (:func:`pcrl_lib.metrics.weighted_auroc`) at the study's sizes,
optionally side by side with the version of another git revision.

Every fine-tuning's interval, every verdict and every row and gain of the budget study
computes a run's AUROC under each bootstrap resample of its test cases (2001 resamples in
:mod:`pcrl_lib.verdicts`): an NIH run is 1000 cases x 14 findings, a LUNA run 1925
candidates x 1. The inputs are synthetic (fixed seed): labels at the given prevalence
(the NIH records': 4-18 % per finding; LUNA's: 38 %) and scores that are nearly all
distinct, as the records' ranks are (a few ties). With ``--against REV`` the function
as it was at git revision ``REV`` (``git show REV:pcrl_lib/metrics.py``; or a file's,
``--against path/to/metrics.py``) runs on the same inputs,
alternating with today's round by round, and the line says whether the two returned the
same array, bit for bit:

    python benchmarks/bootstrap_auroc.py --against HEAD~1
    python benchmarks/bootstrap_auroc.py --cases 1925 --classes 1 --prevalence 0.38

Prints one JSON line: ``median_s`` over ``--rounds`` (and ``against_median_s``, ``ratio``
= against / today, ``identical``). Exit code 2 when the revision cannot be read.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pcrl_lib.metrics import weighted_auroc
from pcrl_lib.perf import machine_description

REPO = Path(__file__).resolve().parents[1]


def auroc_at(rev: str) -> Callable:
    """``weighted_auroc`` as defined in the file ``rev`` (a ``metrics.py``) or else at git
    revision ``rev`` of this repository.

    Raises:
        ValueError: neither such a file nor a revision git can show
            ``pcrl_lib/metrics.py`` at.
    """
    if Path(rev).is_file():
        source, where = Path(rev).read_text(), rev
    else:
        where = f"{rev}:pcrl_lib/metrics.py"
        shown = subprocess.run(
            ["git", "-C", str(REPO), "show", where], capture_output=True, text=True
        )
        if shown.returncode != 0:
            raise ValueError(f"cannot read pcrl_lib/metrics.py at {rev!r}: {shown.stderr.strip()}")
        source = shown.stdout
    module = types.ModuleType("metrics_against")
    exec(compile(source, where, "exec"), module.__dict__)
    return module.weighted_auroc


def inputs(
    cases: int, classes: int, prevalence: float, resamples: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(cases, classes)`` labels and scores (4 decimals: a few ties), and
    ``(resamples + 1, cases)`` counts: the original sample first, then multinomial
    resamples (as the verdicts draw them)."""
    rng = np.random.default_rng(seed)
    y = rng.random((cases, classes)) < prevalence
    scores = np.round(rng.random((cases, classes)) + 0.3 * y, 4)
    draws = rng.multinomial(cases, np.full(cases, 1.0 / cases), size=resamples)
    return y, scores, np.vstack([np.ones(cases), draws])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1000, help="test cases (NIH demo: 1000)")
    parser.add_argument("--classes", type=int, default=14, help="classes (NIH: 14, LUNA: 1)")
    parser.add_argument(
        "--prevalence", type=float, default=0.06, help="share of positives (NIH: ~0.06)"
    )
    parser.add_argument("--resamples", type=int, default=2000, help="as the verdicts: 2000")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--against", default=None, help="git revision, or a metrics.py")
    args = parser.parse_args(argv)
    try:
        other = None if args.against is None else auroc_at(args.against)
    except ValueError as err:
        print(f"bootstrap_auroc: {err}", file=sys.stderr)
        return 2
    y, scores, counts = inputs(args.cases, args.classes, args.prevalence, args.resamples)
    times: dict[str, list[float]] = {"today": [], "against": []}
    sides = {"today": weighted_auroc} | ({} if other is None else {"against": other})
    results = {}
    for _ in range(args.rounds):
        for side, fn in sides.items():
            start = time.perf_counter()
            results[side] = fn(y, scores, counts)
            times[side].append(time.perf_counter() - start)
    out = {"cases": args.cases, "classes": args.classes, "resamples": args.resamples}
    out["median_s"] = statistics.median(times["today"])
    if other is not None:
        out["against"] = args.against
        out["against_median_s"] = statistics.median(times["against"])
        out["ratio"] = out["against_median_s"] / out["median_s"]
        out["identical"] = bool(
            np.array_equal(results["today"], results["against"], equal_nan=True)
        )
    print(json.dumps({**out, "rounds": args.rounds, "machine": machine_description()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
