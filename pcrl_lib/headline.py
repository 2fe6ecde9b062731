"""The headline table: fine-tuning from the zoo's longer pre-training (:mod:`pcrl_lib.zoo`).

PCRLv2 and the two baselines of the budget study (MG, SimSiam), each from the zoo's
encoders, against TS at the lowest label ratio of Tables IV (NIH 5 %), V (LUNA 10 %) and
VIII (LUNA -> LiTS 10 %), with the demo's protocol: label draws ``0..n-1``, fine-tuning seed
= draw; a method with as many zoo seeds as draws pairs seed ``k`` with draw ``k``, one with
fewer fine-tunes its first seed on every draw. TS's runs are the grid's own (same run
names: a reproduction that ran the grid reuses them). Each method's gain over TS is a
:func:`pcrl_lib.verdicts.paired_difference` with its verdict.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pcrl_lib.grid import MAIN_TABLES, FinetuneRun, output_dir, record_file, run_finetuning
from pcrl_lib.verdicts import DIFFERENCE_COLUMNS
from pcrl_lib.workers import run_jobs
from pcrl_lib.zoo import ZOO_DIR, read_manifest, zoo_checkpoint

HEADLINE_TABLES = ("table4", "table5", "table8")
HEADLINE_METHODS = ("PCRLv2", "MG", "SimSiam")
COLUMNS = (
    "table",
    "setting",
    "method",
    "mean",
    "ts_mean",
    *DIFFERENCE_COLUMNS,
    "zoo_steps",
)


@dataclass(frozen=True)
class HeadlineRun:
    """One fine-tuning of a zoo encoder: ``method``'s ``seed`` on ``table``'s label ``draw``."""

    table: str
    method: str
    seed: int
    draw: int

    @property
    def name(self) -> str:
        """Its record's stem."""
        return f"{self.table}_{self.method}_p{self.seed}_d{self.draw}"


def headline_runs(
    draws: tuple[int, ...] = (0, 1, 2), zoo: str | os.PathLike = ZOO_DIR
) -> list[HeadlineRun]:
    """The zoo fine-tunings of the headline table (module docstring)."""
    entries = read_manifest(zoo)["entries"]
    runs = []
    for table in HEADLINE_TABLES:
        source = MAIN_TABLES[table].source
        for method in HEADLINE_METHODS:
            seeds = sorted(
                e["seed"] for e in entries if (e["source"], e["method"]) == (source, method)
            )
            if not seeds:
                continue
            paired = len(seeds) >= len(draws)
            runs += [
                HeadlineRun(table, method, seeds[i] if paired else seeds[0], d)
                for i, d in enumerate(draws)
            ]
    return runs


def ts_runs(draws: tuple[int, ...] = (0, 1, 2)) -> list[FinetuneRun]:
    """TS at the lowest ratio of each headline table on ``draws`` (the grid's runs)."""
    return [
        FinetuneRun(s.task, s.protocol, s.ratios[0], "TS", seed=d, draw=d, tables=(s.name,))
        for s in (MAIN_TABLES[t] for t in HEADLINE_TABLES)
        for d in draws
    ]


def headline_dir(profile: str, results: str | os.PathLike | None = None) -> Path:
    """``<results>/<profile>/headline``: one record per zoo fine-tuning."""
    return output_dir(profile, results) / "headline"


def finetune_from_zoo(
    profile: str,
    run: HeadlineRun,
    folders: dict[str, Path],
    results: str | os.PathLike | None,
    zoo: str | os.PathLike,
) -> dict:
    """Fine-tune one zoo encoder (verified by hash) and write its record; a status row."""
    import tempfile
    import time

    from pcrl_lib.engine.experiment import run_finetune
    from pcrl_lib.profiles import finetune_settings

    spec = MAIN_TABLES[run.table]
    record = headline_dir(profile, results) / f"{run.name}.json"
    if record.is_file():
        return {"run": run.name, "status": "done before", "seconds": 0.0}
    checkpoint = zoo_checkpoint(spec.source, run.method, run.seed, zoo)
    start = time.perf_counter()
    fields = {"table": run.table, "method": run.method, "pretrain_seed": run.seed, "zoo": True}
    with tempfile.TemporaryDirectory() as tmp:
        run_finetune(
            spec.task,
            folders[spec.task],
            finetune_settings(profile, spec.task),
            tmp,
            checkpoint,
            spec.protocol,
            spec.ratios[0],
            seed=run.draw,
            record=record,
            record_fields=fields,
            draw=run.draw,
        )
    return {"run": run.name, "status": "ran", "seconds": round(time.perf_counter() - start, 1)}


def run_headline(
    profile: str,
    folders: dict[str, Path],
    draws: tuple[int, ...] = (0, 1, 2),
    results: str | os.PathLike | None = None,
    zoo: str | os.PathLike = ZOO_DIR,
    workers: int = 1,
) -> list[dict]:
    """Run TS (where the grid has not) and every zoo fine-tuning without a record."""
    rows = run_finetuning(profile, ts_runs(draws), folders, results, workers=workers)
    jobs = [(profile, r, folders, results, zoo) for r in headline_runs(draws, zoo)]
    return rows + run_jobs(finetune_from_zoo, jobs, workers)


def headline_table(
    profile: str,
    draws: tuple[int, ...] = (0, 1, 2),
    results: str | os.PathLike | None = None,
    zoo: str | os.PathLike = ZOO_DIR,
) -> pd.DataFrame:
    """One row per table and method (:data:`COLUMNS`): the method's and TS's mean over the
    draws and the paired gain with its interval and verdict, in points."""
    import json

    from pcrl_lib.verdicts import ArmRun, paired_difference, verdict

    def arm(records: list[dict]) -> list[ArmRun]:
        return [
            ArmRun(r.get("pretrain_seed"), int(r["draw"]), r["per_case"], r["test_split"])
            for r in records
        ]

    steps = read_manifest(zoo).get("steps")
    rows = []
    for table in HEADLINE_TABLES:
        spec = MAIN_TABLES[table]
        ts = [
            json.loads(p.read_text())
            for r in ts_runs(draws)
            if r.tables == (table,) and (p := record_file(profile, r, results)).is_file()
        ]
        for method in HEADLINE_METHODS:
            folder = headline_dir(profile, results)
            recs = [
                json.loads(p.read_text())
                for p in sorted(folder.glob(f"{table}_{method}_p*_d*.json"))
            ]
            recs = [r for r in recs if r["draw"] in draws]
            row = {
                "table": table,
                "setting": f"{spec.task} {spec.protocol} {spec.ratios[0]:.0%}",
                "method": method,
                "zoo_steps": steps,
            }
            if not recs or not ts:
                rows.append({**row, "verdict": "not run"})
                continue
            res = paired_difference(arm(recs), arm(ts))
            rows.append(
                {
                    **row,
                    "mean": 100 * float(np.mean([r["metrics"]["mean"] for r in recs])),
                    "ts_mean": 100 * float(np.mean([r["metrics"]["mean"] for r in ts])),
                    **{
                        k: res[k]
                        for k in (
                            "estimate",
                            "ci_low",
                            "ci_high",
                            "mde",
                            "pretrain_seeds",
                            "label_draws",
                            "test_cases",
                        )
                    },
                    "verdict": verdict(res["ci_low"], res["ci_high"]),
                }
            )
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    counts = ["pretrain_seeds", "label_draws", "test_cases", "zoo_steps"]
    table[counts] = table[counts].astype("Int64")
    return table.round(
        {"mean": 2, "ts_mean": 2, "estimate": 2, "ci_low": 2, "ci_high": 2, "mde": 2}
    )


def write_headline(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """The headline table as CSV, atomically."""
    from pcrl_lib.io import write_text_atomic

    return write_text_atomic(Path(path), table.to_csv(index=False))
