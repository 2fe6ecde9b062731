"""Choose the small profiles' pre-training optimiser on the pretext loss and the encoder
drift - never on a downstream split.

Design (fixed before measuring): PCRLv2 (paper preset), seed 0, on the demo's pre-training
data, views and batch (3D: synthetic LUNA volumes; 2D: the NIH-like X-rays), ``--steps``
optimiser steps with a linear warm-up over the first 10 % and a constant rate after it (the
budget study's schedule, :mod:`pcrl_lib.budget`), for each candidate:

- ``sgd`` at the profile's learning rate (momentum 0.9, weight decay 1e-5: the paper's);
- ``adamw`` at 1e-3 and 3e-4 (weight decay 1e-4).

Score: the mean total pretext loss over the last 20 % of the steps (lower is better), among
the candidates that did not collapse (a final ``collapse_std`` below a quarter of its value
over the first 20 steps). The drift of the encoder's kernels (first, median, last layer;
:mod:`pcrl_lib.engine.drift`) is reported beside it: the point of the option is that the
deep layers move at small budgets. One choice per dimension.

    python benchmarks/select_pretrain_optimizer.py --out results/studies/pretrain_optimizer.csv

Prints one JSON line per candidate and a final line per dimension with the choice.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from pcrl_lib.engine.experiment import run_pretrain
from pcrl_lib.grid import source_folder
from pcrl_lib.io import write_text_atomic
from pcrl_lib.perf import machine_description
from pcrl_lib.profiles import ensure_data, pretrain_settings

CANDIDATES = (("sgd", None, 1e-5), ("adamw", 1e-3, 1e-4), ("adamw", 3e-4, 1e-4))
SOURCES = {3: "luna", 2: "nih"}


def score_log(log: Path, steps: int) -> dict[str, float]:
    """Final loss (mean over the last 20 % of the steps), early and final ``collapse_std``
    (first 20 steps, last 20 %) of a pre-training ``log.jsonl``."""
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    rows = [r for r in rows if r["kind"] == "step"]
    tail = rows[-max(1, steps // 5) :]
    out = {"final_loss": float(np.mean([r["loss"] for r in tail]))}
    if "restoration" in tail[0]:
        out["final_restoration"] = float(np.mean([r["restoration"] for r in tail]))
    if "collapse_std" in tail[0]:
        out["early_collapse_std"] = float(np.mean([r["collapse_std"] for r in rows[:20]]))
        out["final_collapse_std"] = float(np.mean([r["collapse_std"] for r in tail]))
    return out


def choose(rows: pd.DataFrame) -> pd.Series:
    """The row of the lowest ``final_loss`` among those that did not collapse."""
    ok = rows[~(rows["final_collapse_std"] < 0.25 * rows["early_collapse_std"])]
    if ok.empty:
        raise RuntimeError("every candidate collapsed")
    return ok.loc[ok["final_loss"].idxmin()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="demo", choices=("smoke", "demo"))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--dims", type=int, nargs="+", default=[3, 2], choices=(2, 3))
    parser.add_argument("--data-root", default=None, help="default: $PCRL_DATA_ROOT")
    parser.add_argument("--out", default=None, help="CSV of one row per candidate")
    args = parser.parse_args()
    folders = ensure_data(args.profile, args.data_root, roles=tuple(SOURCES.values()))
    rows = []
    for dims in args.dims:
        base = pretrain_settings(args.profile, dims)
        for optimizer, lr, weight_decay in CANDIDATES:
            settings = replace(
                base,
                optimizer=optimizer,
                lr=lr or base.lr,
                weight_decay=weight_decay,
                warmup_steps=max(1, args.steps // 10),
                schedule="constant",
            )
            with tempfile.TemporaryDirectory() as tmp:
                summary = run_pretrain(
                    source_folder(folders, SOURCES[dims]),
                    settings,
                    tmp,
                    method="PCRLv2",
                    progress_bar=False,
                    max_steps=args.steps,
                )
                scores = score_log(Path(tmp) / "log.jsonl", args.steps)
            drift = summary["encoder_drift"]
            row = {
                "dims": dims,
                "optimizer": optimizer,
                "lr": settings.lr,
                "weight_decay": weight_decay,
                "steps": args.steps,
                **{k: round(v, 4) for k, v in scores.items()},
                **{f"drift_{k}": round(v, 4) for k, v in drift.items()},
                "machine": machine_description(),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    table = pd.DataFrame(rows)
    for dims, group in table.groupby("dims"):
        best = choose(group)
        print(json.dumps({"dims": int(dims), "choice": best["optimizer"], "lr": best["lr"]}))
    if args.out:
        write_text_atomic(Path(args.out), table.to_csv(index=False))


if __name__ == "__main__":
    main()
