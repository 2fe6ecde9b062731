"""How much pre-training does self-supervision need? The pre-training budget study.

For each source (synthetic LUNA CT volumes, 3D; NIH-like X-rays, 2D), each method of
:class:`BudgetPlan` and each pre-training seed, **one** run pre-trains with the profile's
settings and a constant learning rate after its warm-up, and keeps its encoder after every
budget (``step_<n>.pt``, :class:`pcrl_lib.engine.pretrain.PretrainConfig`): a snapshot after
``n`` steps is the same whatever the run's final length, so one run serves every budget,
and the study grows budget by budget (a later call extends the runs from where they
stopped, across sessions). Budget 0 is the method's random initialisation.

At every budget each snapshot is measured twice on the source's classification task at the
lowest label ratio of its table (:data:`pcrl_lib.grid.PROBE_TABLES`: LUNA Table V, NIH
Table IV), on the test split:

- a **linear probe** of the frozen encoder over ``probe_draws`` label draws
  (:func:`pcrl_lib.engine.experiment.run_probe`); its gain is paired with the same method's
  budget-0 probe (same seeds, same draws, same test cases);
- a **fine-tuning** with the demo's protocol (:func:`pcrl_lib.engine.experiment.run_finetune`):
  pre-training seed ``k`` fine-tuned on label draw ``k``, fine-tuning seed ``k``; its gain is
  paired with TS (training from scratch) on the same draws.

Gains are :func:`pcrl_lib.verdicts.paired_difference` (hierarchical bootstrap over label
draws, pre-training runs and test cases, widened for few units).

The study proceeds **run by run** (:func:`study_run_job`): a run pre-trains to the largest
budget asked for, then every snapshot is measured and its record written. The records are
the study's durable result: each holds the per-case test results (scores as ranks,
:func:`pcrl_lib.metrics.score_ranks`, gzip-compressed JSON: about 0.2 MB for an NIH record)
and everything the tables need of its run (pretext loss, drift, pre-training seconds), so
the tables are built from records alone, and a run whose records exist is never pre-trained
again - the demo's records are committed (``results/studies/pretrain_budget_records/``),
so the study accumulates across machines; a run killed before its records are written
resumes from its ``last.pt`` where that still exists, else starts again. Files, under
``<results>/<profile>/budget/``: ``pretrain/<source>_<method>_p<seed>/`` (the runs) and, by
default, ``records/``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from pcrl_lib.grid import MAIN_TABLES, PROBE_TABLES, source_folder
from pcrl_lib.io import read_json, write_json_atomic
from pcrl_lib.paths import REPO_ROOT, data_root, results_root
from pcrl_lib.profiles import (
    STUDY_OPTIMIZER,
    PretrainSettings,
    finetune_settings,
    pretrain_settings,
)
from pcrl_lib.verdicts import DIFFERENCE_COLUMNS
from pcrl_lib.workers import run_jobs

ROW_COLUMNS = (
    "method",
    "source",
    "task",
    "steps",
    "seed",
    "probe_auroc",
    "probe_ci_low",
    "probe_ci_high",
    "probe_draws",
    "finetune_auroc",
    "finetune_ci_low",
    "finetune_ci_high",
    "finetune_draw",
    "pretext_loss",
    "drift_median",
    "drift_last",
    "pretrain_wall_s",
    "machine",
)
GAIN_COLUMNS = ("method", "source", "task", "steps", "measure", "reference", *DIFFERENCE_COLUMNS)
# the reference of the gain table's ``finetune_step0`` measure (:func:`gain_table`)
STEP0_REFERENCE = "step 0 (TS on the run's machine)"
RECORD_SUFFIX = ".json.gz"
# the demo study's records, committed: the study's result, kept across machines
COMMITTED_RECORDS = REPO_ROOT / "results" / "studies" / "pretrain_budget_records"


@dataclass(frozen=True)
class BudgetPlan:
    """What the study runs at one profile.

    ``budgets``: optimiser steps at which every run is measured (0: random initialisation),
    ascending. ``seeds``: pre-training seeds; fine-tuning pairs seed ``k`` with label draw
    ``k``. ``probe_draws``: label draws of every linear probe (crossed with the seeds)."""

    methods: tuple[str, ...] = ("PCRLv2", "MG", "SimSiam")
    sources: tuple[str, ...] = ("luna", "nih")
    budgets: tuple[int, ...] = (0, 300, 1000, 3000)
    seeds: tuple[int, ...] = (0, 1, 2)
    probe_draws: int = 10

    def __post_init__(self) -> None:
        if list(self.budgets) != sorted(set(self.budgets)) or self.budgets[0] != 0:
            raise ValueError(f"budgets must ascend from 0 without repeats, got {self.budgets}")
        unknown = set(self.sources) - {"luna", "nih"}
        if unknown:
            raise ValueError(f"sources must be luna or nih, got {sorted(unknown)}")
        if not self.seeds or self.probe_draws < 1:
            raise ValueError("a plan needs at least one seed and one probe draw")


PLANS = {
    "smoke": BudgetPlan(budgets=(0, 2), seeds=(0,), probe_draws=2),
    "demo": BudgetPlan(),
    "paper": BudgetPlan(budgets=(0, 3000, 10000, 30000, 100000), seeds=(0, 1, 2)),
}


def study_dir(profile: str, results: str | os.PathLike | None = None) -> Path:
    """``<results>/<profile>/budget``."""
    return results_root(results) / profile / "budget"


def run_name(source: str, method: str, seed: int) -> str:
    """``<source>_<method>_p<seed>``: a pre-training run's folder."""
    return f"{source}_{method}_p{seed}"


def record_name(source: str, method: str, seed: int, steps: int | None) -> str:
    """A measured snapshot's record stem (``steps=None``: TS on draw ``seed``)."""
    if steps is None:
        return f"{source}_TS_d{seed}"
    return f"{run_name(source, method, seed)}_s{steps:06d}"


def records_dir(
    profile: str, results: str | os.PathLike | None = None, records: str | os.PathLike | None = None
) -> Path:
    """Where the study's records are: ``records`` when given, else
    ``<results>/<profile>/budget/records``."""
    return Path(records) if records is not None else study_dir(profile, results) / "records"


def record_path(records: Path, source: str, method: str, seed: int, steps: int | None) -> Path:
    """``<records>/<record_name>.json.gz``."""
    return Path(records) / f"{record_name(source, method, seed, steps)}{RECORD_SUFFIX}"


def missing_records(plan: BudgetPlan, upto: int, records: str | os.PathLike) -> list[str]:
    """The record names the plan needs up to ``upto`` steps that ``records`` lacks (TS's
    included): empty when the study is complete there."""
    need = [(s, "TS", k, None) for s in plan.sources for k in plan.seeds]
    need += [
        (s, m, k, b)
        for s in plan.sources
        for m in plan.methods
        for k in plan.seeds
        for b in plan.budgets
        if b <= upto
    ]
    return [record_name(*n) for n in need if not record_path(Path(records), *n).is_file()]


def study_settings(profile: str, spatial_dims: int) -> PretrainSettings:
    """The profile's pre-training settings with the study's optimiser
    (:data:`pcrl_lib.profiles.STUDY_OPTIMIZER`) and a constant rate after the warm-up (so
    that a snapshot does not depend on the run's final length)."""
    base = pretrain_settings(profile, spatial_dims)
    return replace(base, schedule="constant", **STUDY_OPTIMIZER[profile])


def precision_changes(plan: BudgetPlan, profile: str, device: str) -> list[str]:
    """The study's settings whose autocast precision ``device`` would change
    (:func:`pcrl_lib.perf.effective_dtype`: bf16 runs as fp32 on a CPU without native bf16
    kernels), e.g. ``["luna pre-training: bf16 -> fp32"]``; empty when every run keeps its
    precision. The demo's committed records were measured as the settings ask: a record
    measured at another precision would mix two designs in one curve."""
    from pcrl_lib.perf import effective_dtype

    asked = {f"{s} pre-training": study_settings(profile, 3 if s == "luna" else 2).dtype
             for s in plan.sources}  # fmt: skip
    for s in plan.sources:
        task = MAIN_TABLES[PROBE_TABLES[s]].task
        asked[f"{s} probe and fine-tuning ({task})"] = finetune_settings(profile, task).dtype
    used = {name: effective_dtype(dtype, device) for name, dtype in asked.items()}
    return [f"{name}: {asked[name]} -> {used[name]}" for name in asked if used[name] != asked[name]]


def _checkpoint_step(run_dir: Path) -> int:
    import torch

    ckpt = run_dir / "last.pt"
    if not ckpt.is_file():
        return 0
    return int(torch.load(ckpt, map_location="cpu", weights_only=True).get("step", 0))


def pretrain_job(
    profile: str,
    source: str,
    method: str,
    seed: int,
    steps: int,
    snapshots: tuple[int, ...],
    folder: Path,
    out: Path,
) -> dict:
    """Pre-train (or extend) one run to ``steps`` steps, keeping ``snapshots``; a status row."""
    from pcrl_lib.engine.experiment import run_pretrain

    name = f"{run_name(source, method, seed)} -> {steps}"
    if _checkpoint_step(out) >= steps:
        return {"run": name, "status": "done before", "seconds": 0.0}
    start = _now()
    run_pretrain(
        folder,
        study_settings(profile, 3 if source == "luna" else 2),
        out,
        method=method,
        seed=seed,
        progress_bar=False,
        max_steps=steps,
        snapshot_steps=snapshots,
    )
    return {"run": name, "status": "ran", "seconds": _now() - start}


def measure_job(
    profile: str,
    source: str,
    method: str,
    seed: int,
    steps: int | None,
    snapshot: Path | None,
    folders: dict[str, Path],
    record: Path,
    probe_draws: int,
) -> dict:
    """Probe and fine-tune one snapshot (``steps=None``: fine-tune TS on draw ``seed``) and
    write its record (:func:`record_path`; scores as ranks, with the run's pretext loss,
    drift and pre-training seconds at ``steps``); a status row."""
    from pcrl_lib.engine.experiment import run_finetune, run_probe
    from pcrl_lib.perf import machine_description

    name = record.name.removesuffix(RECORD_SUFFIX)
    if record.is_file():
        return {"run": name, "status": "done before", "seconds": 0.0}
    start = _now()
    spec = MAIN_TABLES[PROBE_TABLES[source]]
    settings = finetune_settings(profile, spec.task)
    fields = {
        "table": "budget",
        "method": method,
        "source": source,
        "steps": steps,
        "pretrain_seed": None if steps is None else seed,
    }
    with tempfile.TemporaryDirectory() as tmp:
        rec = run_finetune(
            spec.task,
            folders[spec.task],
            settings,
            tmp,
            snapshot,
            spec.protocol,
            spec.ratios[0],
            seed=seed,
            record=Path(tmp) / "record.json",
            record_fields=fields,
            draw=seed,
        )
    rec["per_case"] = _ranked(rec["per_case"])
    rec["data"] = portable_path(rec["data"], data_root())
    if snapshot is not None:
        rec["checkpoint"] = portable_path(snapshot, Path(snapshot).parent.parent)
    out = {**fields, "finetune": rec, "scores": "ranks", "machine": machine_description()}
    if steps is not None:
        probe = run_probe(
            spec.task,
            folders[spec.task],
            settings,
            snapshot,
            spec.protocol,
            spec.ratios[0],
            tuple(range(probe_draws)),
            split="test",
            per_case=True,
        )
        probe["per_case"] = [_ranked(cases) for cases in probe["per_case"]]
        out["probe"] = probe
        out["pretrain"] = run_summary(Path(snapshot).parent, steps)
    out["wall_s"] = _now() - start
    write_json_atomic(record, out)
    return {"run": name, "status": "ran", "seconds": out["wall_s"]}


def portable_path(path: str | os.PathLike, root: str | os.PathLike) -> str:
    """``path`` as a POSIX path relative to ``root`` when it lies under ``root``, else its
    last component: a committed record names its data and snapshot without this machine's
    folders (``"demo/synthetic-nih"``, ``"nih_MG_p0/step_000300.pt"``)."""
    path, root = Path(path).resolve(), Path(root).resolve()
    return (path.relative_to(root) if path.is_relative_to(root) else Path(path.name)).as_posix()


def _ranked(per_case: dict) -> dict:
    from pcrl_lib.metrics import score_ranks

    return {**per_case, "y_score": score_ranks(per_case["y_score"]).tolist()}


def run_summary(run_dir: Path, steps: int) -> dict[str, float | None]:
    """What the tables need of a run at ``steps``, for its record: the pretext loss
    (:func:`pretext_loss`; ``None`` at 0), the encoder's drift from step 0 (median and
    deepest kernel, :func:`snapshot_drift`) and the pre-training seconds
    (:func:`pretrain_seconds`)."""
    if steps == 0:
        return {"pretext_loss": None, "drift_median": 0.0, "drift_last": 0.0, "wall_s": 0.0}
    log = Path(run_dir) / "log.jsonl"
    drift = snapshot_drift(Path(run_dir), steps)

    def number(x: float) -> float | None:
        return None if math.isnan(x) else round(float(x), 6)

    return {
        "pretext_loss": number(pretext_loss(log, steps)),
        "drift_median": number(drift["median"]),
        "drift_last": number(drift["last"]),
        "wall_s": number(pretrain_seconds(log, steps)),
    }


def study_run_job(
    profile: str,
    source: str,
    method: str,
    seed: int,
    budgets: tuple[int, ...],
    snapshots: tuple[int, ...],
    folders: dict[str, Path],
    run_dir: Path,
    records: Path,
    probe_draws: int,
    after_run: Callable[[str, str, int, Path, Path], object] | None = None,
    start_by: float | None = None,
) -> dict:
    """One run of the study: pre-train (or extend) it budget by budget up to
    ``budgets[-1]`` steps keeping ``snapshots``, measuring each budget whose record is
    missing (:func:`measure_job`) as soon as the run has reached it - so a run cut short
    keeps the records of the budgets it passed, and its extension gives the same weights as
    an uninterrupted run -, then call ``after_run(source, method, seed, run_dir, records)``
    (e.g. the zoo's export). A run whose records all exist is not touched; one not begun
    by ``start_by`` (``time.time()`` seconds) is left for later. A status row."""
    import time

    name = f"{run_name(source, method, seed)} -> {budgets[-1]}"
    missing = [b for b in budgets if not record_path(records, source, method, seed, b).is_file()]
    if not missing:
        return {"run": name, "status": "done before", "seconds": 0.0}
    if start_by is not None and time.time() > start_by:
        return {"run": name, "status": "not started", "seconds": 0.0}
    start = _now()
    folder = source_folder(folders, source)
    for stage in [b for b in budgets if b > 0 and b >= min(missing)]:
        pretrain_job(profile, source, method, seed, stage, snapshots, folder, run_dir)
        while missing and missing[0] <= stage:
            b = missing.pop(0)
            snapshot = run_dir / f"step_{b:06d}.pt"
            record = record_path(records, source, method, seed, b)
            measure_job(profile, source, method, seed, b, snapshot, folders, record, probe_draws)
    if after_run is not None:
        after_run(source, method, seed, run_dir, records)
    return {"run": name, "status": "ran", "seconds": _now() - start}


def _now() -> float:
    import time

    return time.perf_counter()


def run_study(
    profile: str,
    folders: dict[str, Path],
    plan: BudgetPlan | None = None,
    upto: int | None = None,
    results: str | os.PathLike | None = None,
    workers: int = 1,
    records: str | os.PathLike | None = None,
    after_run: Callable[[str, str, int, Path, Path], object] | None = None,
    start_by: float | None = None,
) -> list[dict]:
    """Run the study up to ``upto`` steps (default: the plan's largest): TS's fine-tunings,
    then every run (:func:`study_run_job`), seed by seed, in ``workers`` processes.
    Everything measured before is kept; a killed study resumes. ``folders``:
    :func:`pcrl_lib.profiles.ensure_data`'s, with each source's task; ``records``:
    :func:`records_dir`. Returns the status rows."""
    plan = PLANS[profile] if plan is None else plan
    upto = plan.budgets[-1] if upto is None else upto
    budgets = tuple(b for b in plan.budgets if b <= upto)
    if len(budgets) < 2:
        raise ValueError(f"upto={upto}: below the plan's first budget after 0 ({plan.budgets})")
    base = study_dir(profile, results)
    records = records_dir(profile, results, records)
    ts_jobs = [
        (profile, s, "TS", k, None, None, folders, record_path(records, s, "TS", k, None), plan.probe_draws)
        for s in plan.sources
        for k in plan.seeds
    ]  # fmt: skip
    rows = run_jobs(measure_job, ts_jobs, workers)
    runs = [
        (profile, s, m, k, budgets, plan.budgets, folders, base / "pretrain" / run_name(s, m, k), records, plan.probe_draws, after_run, start_by)
        for k in plan.seeds
        for s in plan.sources
        for m in plan.methods
    ]  # fmt: skip
    return rows + run_jobs(study_run_job, runs, workers)


def _records(
    profile: str, results: str | os.PathLike | None, records: str | os.PathLike | None
) -> list[dict]:
    """Every record of the study (:func:`records_dir`), in file-name order."""
    folder = records_dir(profile, results, records)
    return [read_json(path) for path in sorted(folder.glob(f"*{RECORD_SUFFIX}"))]


def step_log(log: Path) -> dict[int, dict]:
    """A run's step log lines by global step (the last of repeats: a killed stage's steps
    are logged again when it resumes)."""
    lines: dict[int, dict] = {}
    if log.is_file():
        for text in log.read_text().splitlines():
            row = json.loads(text)
            if row.get("kind") == "step" and "global_step" in row:
                lines[int(row["global_step"])] = row
    return lines


def pretrain_seconds(log: Path, steps: int) -> float:
    """Pre-training seconds to reach ``steps`` steps: the epochs' logged durations summed,
    the epoch that contains ``steps`` pro-rated; a killed stage's lost work is not counted."""
    total, done = 0.0, 0
    if not log.is_file():
        return math.nan
    for text in log.read_text().splitlines():
        row = json.loads(text)
        if row.get("kind") != "epoch" or not row.get("steps"):
            continue
        take = min(row["steps"], steps - done)
        if take <= 0:
            break
        total += row["seconds"] * take / row["steps"]
        done += take
    return total if done >= steps else math.nan


def pretext_loss(log: Path, steps: int, window: int = 50) -> float:
    """Mean pre-training loss over the ``window`` steps up to ``steps`` (NaN at 0)."""
    lines = step_log(log)
    losses = [lines[s]["loss"] for s in range(max(1, steps - window + 1), steps + 1) if s in lines]
    return float(np.mean(losses)) if losses else math.nan


def snapshot_drift(run_dir: Path, steps: int) -> dict[str, float]:
    """:func:`pcrl_lib.engine.drift.summarize_drift` of the encoder's kernels between the
    ``step_0`` and ``step_<steps>`` snapshots."""
    import torch

    from pcrl_lib.engine.drift import summarize_drift, weight_drift

    def kernels(step: int) -> dict:
        state = torch.load(run_dir / f"step_{step:06d}.pt", map_location="cpu", weights_only=True)
        return {k: v.float() for k, v in state["model"].items() if v.dim() >= 2}

    return summarize_drift(weight_drift(kernels(0), kernels(steps)))


def _probe_runs(rec: dict):
    from pcrl_lib.verdicts import ArmRun

    probe = rec["probe"]
    return [
        ArmRun(rec["pretrain_seed"], d, cases, probe["test_split"])
        for d, cases in zip(probe["draws"], probe["per_case"], strict=True)
    ]


def _finetune_run(rec: dict):
    from pcrl_lib.verdicts import ArmRun

    ft = rec["finetune"]
    return ArmRun(rec["pretrain_seed"], int(ft["draw"]), ft["per_case"], ft["test_split"])


def study_rows(
    profile: str,
    results: str | os.PathLike | None = None,
    records: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """One row per measured snapshot (:data:`ROW_COLUMNS`), from the records alone
    (:func:`records_dir`): the probe's AUROC (mean over its draws, 95 % interval over draws
    and test cases), the fine-tuned AUROC (its draw's, interval over test cases), the
    pretext loss at that step, the encoder's drift from step 0 (median and deepest kernel),
    the pre-training seconds and the machine (:func:`run_summary`)."""
    return _study_rows(_records(profile, results, records))


def _study_rows(records: list[dict]) -> pd.DataFrame:
    from pcrl_lib.verdicts import arm_interval

    rows = []
    for rec in records:
        if rec["steps"] is None:
            continue
        steps, ft, run = int(rec["steps"]), rec["finetune"], rec["pretrain"]
        probe = arm_interval(_probe_runs(rec))
        rows.append(
            {
                "method": rec["method"],
                "source": rec["source"],
                "task": ft["task"],
                "steps": steps,
                "seed": rec["pretrain_seed"],
                "probe_auroc": probe["estimate"],
                "probe_ci_low": probe["ci_low"],
                "probe_ci_high": probe["ci_high"],
                "probe_draws": len(rec["probe"]["draws"]),
                "finetune_auroc": 100 * ft["metrics"]["mean"],
                "finetune_ci_low": 100 * ft["metrics"]["mean_ci"][0],
                "finetune_ci_high": 100 * ft["metrics"]["mean_ci"][1],
                "finetune_draw": ft["draw"],
                "pretext_loss": math.nan if run["pretext_loss"] is None else run["pretext_loss"],
                "drift_median": run["drift_median"],
                "drift_last": run["drift_last"],
                "pretrain_wall_s": run["wall_s"],
                "machine": rec["machine"],
            }
        )
    table = pd.DataFrame(rows, columns=list(ROW_COLUMNS))
    return table.sort_values(["source", "method", "steps", "seed"], ignore_index=True).round(4)


def gain_table(
    profile: str,
    results: str | os.PathLike | None = None,
    records: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """One row per (source, method, budget) and measure (:data:`GAIN_COLUMNS`), each a
    :func:`pcrl_lib.verdicts.paired_difference` with its verdict:

    - ``probe``: the probe's gain over the same method's budget-0 probe (random
      initialisation; same seeds, draws and test cases);
    - ``finetune``: the fine-tuning's gain over TS on the same draws (the study's design);
    - ``finetune_step0``: the fine-tuning's gain over the same runs' budget-0 fine-tunings
      (seed ``k`` on draw ``k``). On the machine that measured TS a budget-0 fine-tuning
      *is* TS's run (same initialisation, draw and arithmetic; the records agree case by
      case), so the two references agree there; where a run was measured on another
      machine, this one leaves out the machines' arithmetic (a fine-tuning moves by about
      2 AUROC points between CPUs), which ``finetune`` counts as a gain or a loss. Added
      after the study began (the NIH SimSiam seeds 1-2 showed it); ``finetune`` stays the
      reported measure."""
    return _gain_table(_records(profile, results, records))


def _gain_table(records: list[dict]) -> pd.DataFrame:
    from pcrl_lib.verdicts import paired_difference, verdict

    ts = {
        src: [_finetune_run(r) for r in records if r["steps"] is None and r["source"] == src]
        for src in {r["source"] for r in records}
    }
    cells: dict[tuple, list[dict]] = {}
    for rec in records:
        if rec["steps"] is not None:
            cells.setdefault((rec["source"], rec["method"], int(rec["steps"])), []).append(rec)
    rows = []
    for (source, method, steps), recs in sorted(cells.items()):
        task = recs[0]["finetune"]["task"]
        initial = cells.get((source, method, 0), [])
        seeds = {r["pretrain_seed"] for r in recs}
        finetuned = [_finetune_run(r) for r in recs]
        pairs = [
            ("probe", "random init", [x for r in recs for x in _probe_runs(r)],
             [x for r in initial if r["pretrain_seed"] in seeds for x in _probe_runs(r)]),
            ("finetune", "TS", finetuned, ts.get(source, [])),
            ("finetune_step0", STEP0_REFERENCE, finetuned,
             [_finetune_run(r) for r in initial if r["pretrain_seed"] in seeds]),
        ]  # fmt: skip
        for measure, reference, a, b in pairs:
            row = {"method": method, "source": source, "task": task, "steps": steps}
            row |= {"measure": measure, "reference": reference}
            if not a or not b:
                continue
            res = paired_difference(a, b, paired_seeds=measure == "probe")
            res["verdict"] = verdict(res["ci_low"], res["ci_high"])
            rows.append({**row, **{k: res[k] for k in GAIN_COLUMNS if k in res}})
    table = pd.DataFrame(rows, columns=list(GAIN_COLUMNS))
    return table.round({"estimate": 2, "ci_low": 2, "ci_high": 2, "mde": 2})


def write_study(
    profile: str,
    out_dir: str | os.PathLike,
    results: str | os.PathLike | None = None,
    records: str | os.PathLike | None = None,
) -> tuple[Path, Path]:
    """Write ``pretrain_budget.csv`` (:func:`study_rows`) and ``pretrain_budget_gains.csv``
    (:func:`gain_table`) into ``out_dir`` atomically; returns their paths. Both come from
    one reading of the records, so a record written meanwhile by a running study cannot
    appear in one table and not in the other."""
    from pcrl_lib.io import write_text_atomic

    out = Path(out_dir)
    measured = _records(profile, results, records)
    rows, gains = _study_rows(measured), _gain_table(measured)
    rows_path = write_text_atomic(out / "pretrain_budget.csv", rows.to_csv(index=False))
    gains_path = write_text_atomic(out / "pretrain_budget_gains.csv", gains.to_csv(index=False))
    return rows_path, gains_path


SOURCE_LABELS = {"luna": "LUNA candidates (3D)", "nih": "NIH X-rays (2D)"}


def plot_gains(gains: pd.DataFrame, title: str = ""):
    """The gain against pre-training steps, one panel per measure (rows: probe,
    fine-tuning against TS) and source (columns), one line per method with its 95 % band;
    the x axis is symmetric-log (0 = random initialisation). The ``finetune_step0`` rows
    (:func:`gain_table`) stay in the table."""
    import matplotlib.pyplot as plt

    measures = [m for m in ("probe", "finetune") if m in set(gains["measure"])]
    sources = [s for s in ("luna", "nih") if s in set(gains["source"])]
    fig, axes = plt.subplots(
        len(measures), len(sources), figsize=(4.2 * len(sources), 3.2 * len(measures)),
        squeeze=False, sharex=True,
    )  # fmt: skip
    for i, measure in enumerate(measures):
        for j, source in enumerate(sources):
            ax = axes[i][j]
            cell = gains[(gains["measure"] == measure) & (gains["source"] == source)]
            for method, line in cell.groupby("method", sort=False):
                line = line.sort_values("steps")
                (drawn,) = ax.plot(line["steps"], line["estimate"], marker="o", label=method)
                ax.fill_between(
                    line["steps"],
                    line["ci_low"],
                    line["ci_high"],
                    color=drawn.get_color(),
                    alpha=0.2,
                )
            ax.axhline(0, color="black", lw=0.8)
            steps = sorted(int(x) for x in gains["steps"].unique())
            ax.set_xscale("symlog", linthresh=max(1, min([x for x in steps if x] or [1])))
            ax.set_xticks(steps, [str(x) for x in steps])
            ax.minorticks_off()
            reference = "random init" if measure == "probe" else "TS"
            ax.set_title(f"{SOURCE_LABELS[source]}: {measure} vs {reference}", fontsize=9)
            ax.set_ylabel("AUROC gain (points)")
            if i == len(measures) - 1:
                ax.set_xlabel("pre-training steps")
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_drift(rows: pd.DataFrame, title: str = ""):
    """How far the encoder's kernels moved from step 0 against the steps: one panel per
    source, the median kernel (dashed) and the deepest one (solid) per method, averaged over
    the seeds (:func:`snapshot_drift`)."""
    import matplotlib.pyplot as plt

    sources = [s for s in ("luna", "nih") if s in set(rows["source"])]
    fig, axes = plt.subplots(1, len(sources), figsize=(4.2 * len(sources), 3.2), squeeze=False)
    steps = sorted(int(x) for x in rows["steps"].unique())
    for ax, source in zip(axes[0], sources, strict=True):
        cell = rows[rows["source"] == source].groupby(["method", "steps"], sort=False)
        mean = cell[["drift_median", "drift_last"]].mean().reset_index()
        for method, line in mean.groupby("method", sort=False):
            line = line.sort_values("steps")
            (drawn,) = ax.plot(line["steps"], line["drift_last"], marker="o", label=method)
            ax.plot(line["steps"], line["drift_median"], ls="--", color=drawn.get_color())
        ax.set_xscale("symlog", linthresh=max(1, min([x for x in steps if x] or [1])))
        ax.set_xticks(steps, [str(x) for x in steps])
        ax.minorticks_off()
        ax.set_title(f"{SOURCE_LABELS[source]}: drift from step 0", fontsize=9)
        ax.set_xlabel("pre-training steps")
        ax.set_ylabel("||W - W0|| / ||W0||")
    axes[0][0].legend(fontsize=8, title="solid: deepest, dashed: median", title_fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
