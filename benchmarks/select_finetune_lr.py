"""Choose the small profiles' fine-tuning learning rate: once, for TS, on the validation
split - never on a test split, never per method.

For each task at the lowest label ratio of its table (LUNA 10 % semi, NIH 5 % semi, LiTS and
BraTS 10 % transfer), training from scratch with the profile's settings (Adam, its step
budget) is run at every learning rate of ``--lrs`` on every label draw of ``--draws``; the
score of a learning rate is its best validation metric (the number model selection uses),
averaged over the draws, and then over the tasks as ranks (1 = best; ties share the mean
rank), so that no task's scale dominates. The learning rate with the best mean rank is the
one the profile uses for every method (``pcrl_lib.profiles.DEMO_FINETUNE_LR``).

Prints one JSON line per run and a final line with the choice; ``--out`` writes one CSV row
per run (the test metric is recorded but plays no part in the choice).

    python benchmarks/select_finetune_lr.py --profile demo --out results/studies/finetune_lr.csv
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from pcrl_lib.engine.experiment import run_finetune
from pcrl_lib.grid import MAIN_TABLES
from pcrl_lib.io import write_text_atomic
from pcrl_lib.profiles import ensure_data, finetune_settings

# the table whose lowest ratio each task is chosen at
TASK_TABLES = {"luna": "table5", "nih": "table4", "lits": "table8", "brats": "table7"}


def choose(rows: pd.DataFrame) -> float:
    """The learning rate of the best mean rank over tasks of its draw-averaged validation
    score (higher is better); ``rows`` needs ``task, lr, best_val`` columns."""
    per_task = rows.groupby(["task", "lr"])["best_val"].mean().unstack("task")
    ranks = per_task.rank(ascending=False)
    return float(ranks.mean(axis=1).idxmin())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="demo", choices=("smoke", "demo"))
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-4, 3e-4, 1e-3, 3e-3, 1e-2])
    parser.add_argument("--draws", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--tasks", nargs="+", default=list(TASK_TABLES), choices=list(TASK_TABLES))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="CSV of every run")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    folders = ensure_data(args.profile, roles=tuple(sorted(set(args.tasks))))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks:
            spec = MAIN_TABLES[TASK_TABLES[task]]
            for lr in args.lrs:
                settings = replace(finetune_settings(args.profile, task), lr=lr)
                for draw in args.draws:
                    rec = run_finetune(
                        task,
                        folders[task],
                        settings,
                        Path(tmp) / "work",
                        protocol=spec.protocol,
                        label_ratio=spec.ratios[0],
                        seed=draw,
                        draw=draw,
                        record=Path(tmp) / "record.json",
                        n_boot=10,
                    )
                    row = {
                        "task": task,
                        "protocol": spec.protocol,
                        "label_ratio": spec.ratios[0],
                        "optimizer": settings.optimizer,
                        "lr": lr,
                        "draw": draw,
                        "best_val": round(100 * rec["best_val"], 2),
                        "test_not_used": round(100 * rec["metrics"]["mean"], 2),
                        "wall_s": rec["wall_s"],
                        "machine": f"{platform.processor() or platform.machine()}, "
                        f"{torch.get_num_threads()} threads",
                    }
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    table = pd.DataFrame(rows)
    lr = choose(table)
    print(json.dumps({"chosen_lr": lr, "rule": "best mean rank of the validation score"}))
    if args.out:
        write_text_atomic(args.out, table.to_csv(index=False))


if __name__ == "__main__":
    main()
