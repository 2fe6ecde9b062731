"""Verdicts of the report's checks: a paired difference with a hierarchical bootstrap 95 %
interval over everything that varies - pre-training seed, label draw and test case.

A check compares two arms on one cell of the grid (task, protocol, label ratio, metric):
PCRLv2 against training from scratch at the lowest label ratio of Tables IV-VIII, PCRLv2
without against with skip connections (Table I), pairwise against crossed comparison
(Table II), the full method against each reduced row of Table III. Every arm is a set of
fine-tuning runs, one per (pre-training seed, label draw); both arms use the same label
draws (same labelled subsets) and the same test split, so the difference is paired by draw
and by test case.

**The estimate** is ``mean_{s, d} M(A_{s,d}) - mean_{s', d} M(B_{s',d})`` on the whole test
split (``M``: the table's metric in percent - mean AUROC over classes or mean Dice over
cases). **The interval**: each of ``n_boot`` replicates resamples with replacement the label
draws (shared by both arms), each arm's pre-training seeds (independent runs: resampled
independently; TS has none) and the test cases (shared by every run), and recomputes the
estimate; the 2.5 and 97.5 percentiles bound it. AUROC is recomputed exactly on each
resample (:func:`pcrl_lib.metrics.weighted_auroc`). Where an arm's pre-training runs are
paired one to one with the draws (the small profiles), a (pre-training run, draw) pair is
one unit and is resampled as one.

With a handful of units (5 label draws) the percentile interval is too narrow - the
bootstrap takes the units' spread as known - so it is widened about the estimate by
:func:`small_sample_factor` (t quantiles with n - 1 degrees of freedom; x1.58 for 5 draws).

**The verdict**: ``gain`` when the interval lies above 0, ``loss`` below 0, ``no detectable
gain`` when it spans 0; ``mde`` is the smallest true difference the design would detect
with 80 % power at this spread, ``(1.96 + 0.84) x`` the widened standard error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pcrl_lib.grid import ABLATIONS, MAIN_TABLES
from pcrl_lib.metrics import weighted_auroc

# what every paired comparison reports (here, in the budget study and the headline table)
DIFFERENCE_COLUMNS = (
    "estimate",
    "ci_low",
    "ci_high",
    "verdict",
    "pretrain_seeds",
    "label_draws",
    "test_cases",
    "mde",
)
COLUMNS = ("table", "setting", "check", *DIFFERENCE_COLUMNS)
GAIN, LOSS, NONE, NOT_RUN = "gain", "loss", "no detectable gain", "not run"
_Z_POWER = 1.959964 + 0.841621  # two-sided 5 % test, 80 % power


@dataclass(frozen=True)
class Arm:
    """One side of a check: a method (and PCRLv2 variant) on the check's cell."""

    method: str
    variant: str = ""

    @property
    def label(self) -> str:
        """``method`` or ``method-variant``."""
        return self.method + (f"-{self.variant}" if self.variant else "")


@dataclass(frozen=True)
class Check:
    """A comparison ``a - b`` on one cell (see the module docstring)."""

    table: str
    setting: str
    check: str
    task: str
    protocol: str
    label_ratio: float
    a: Arm
    b: Arm
    metric: str = "mean"


def report_checks() -> list[Check]:
    """The checks of the 07 report: PCRLv2 vs TS at the lowest ratio of each of Tables
    IV-VIII, and the ablations of Tables I-III (each variant against the full method)."""
    out = []
    for spec in MAIN_TABLES.values():
        ratio = spec.ratios[0]
        out.append(
            Check(
                spec.name,
                f"{spec.task} {spec.protocol} {ratio:.0%}",
                "PCRLv2 - TS",
                spec.task,
                spec.protocol,
                ratio,
                Arm("PCRLv2"),
                Arm("TS"),
            )
        )
    for table, task, protocol, ratio, _source, variants in ABLATIONS:
        setting = f"{task} {protocol} {ratio:.0%}"
        for v in variants:
            if v == "":
                continue
            name = {
                "skip": "without skips - with skips",
                "crossed": "pairwise - crossed",
            }.get(v, f"row 6 (full) - {v.replace('row', 'row ')}")
            out.append(
                Check(table, setting, name, task, protocol, ratio, Arm("PCRLv2"), Arm("PCRLv2", v))
            )
    return out


@dataclass
class ArmRun:
    """One run of an arm: its pre-training seed (``None``: no pre-training), label draw,
    per-case test results (a run record's ``per_case``) and test-split digest."""

    pretrain_seed: int | None
    draw: int
    per_case: dict
    test_split: str | None = None  # digest of the test ids (run records), None: unknown


def arm_runs(records: Sequence[dict], c: Check, arm: Arm) -> list[ArmRun]:
    """The runs of ``arm`` on ``c``'s cell (task, protocol, ratio) among run records, those
    with per-case test results."""
    runs = []
    for rec in records:
        if (
            rec.get("task") == c.task
            and rec.get("protocol") == c.protocol
            and math.isclose(float(rec.get("label_ratio", -1)), c.label_ratio)
            and rec.get("method") == arm.method
            and rec.get("variant", "") == arm.variant
            and rec.get("per_case")
        ):
            runs.append(
                ArmRun(
                    rec.get("pretrain_seed"),
                    int(rec.get("draw", 0)),
                    rec["per_case"],
                    rec.get("test_split"),
                )
            )
    return runs


def _metric_table(runs: list[ArmRun], kind: str, counts: np.ndarray) -> np.ndarray:
    """``(runs, B)`` metric in percent under each resample of the test cases."""
    out = np.empty((len(runs), len(counts)))
    for k, run in enumerate(runs):
        if kind == "dice":
            per_case = np.asarray(run.per_case["dice"], dtype=float).mean(axis=1)
            out[k] = counts @ per_case / counts.sum(axis=1)
        else:
            y_true = np.asarray(run.per_case["y_true"])
            y_score = np.asarray(run.per_case["y_score"], dtype=float)
            if y_true.ndim == 1:
                y_true, y_score = y_true[:, None], y_score[:, None]
            with np.errstate(invalid="ignore"):
                out[k] = np.nanmean(weighted_auroc(y_true, y_score, counts), axis=1)
    return 100 * out


def paired_difference(
    a_runs: list[ArmRun],
    b_runs: list[ArmRun],
    n_boot: int = 2000,
    seed: int = 0,
    paired_seeds: bool = False,
) -> dict:
    """The estimate, interval and standard error of ``mean(a) - mean(b)`` (module
    docstring). Only label draws present in both arms are used.

    ``paired_seeds``: both arms cross the same pre-training runs with the draws (e.g. one
    run's encoder at two budgets): each replicate resamples the seeds once for both arms,
    and the interval is widened for the fewer of draws and seeds.

    Raises:
        ValueError: no shared draw, or runs tested on different test splits (sizes or
            digests of their ids differ).
    """
    draws = sorted({r.draw for r in a_runs} & {r.draw for r in b_runs})
    if not draws:
        raise ValueError("paired_difference: the two arms share no label draw")
    a_runs = [r for r in a_runs if r.draw in draws]
    b_runs = [r for r in b_runs if r.draw in draws]
    kind = "dice" if "dice" in a_runs[0].per_case else "auroc"
    sizes = {len(next(iter(r.per_case.values()))) for r in a_runs + b_runs}
    digests = {r.test_split for r in a_runs + b_runs} - {None}
    if len(sizes) != 1 or len(digests) > 1:
        raise ValueError(f"paired_difference: runs were tested on different splits {sizes}")
    n = sizes.pop()
    rng = np.random.default_rng(seed)
    counts = np.vstack([np.ones(n), rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot)])
    m_a, m_b = _metric_table(a_runs, kind, counts), _metric_table(b_runs, kind, counts)
    estimate = float(m_a[:, 0].mean() - m_b[:, 0].mean())
    arm_a, arm_b = _arm_index(a_runs), _arm_index(b_runs)
    units = len(draws)
    if paired_seeds:
        if arm_a.seeds != arm_b.seeds:
            raise ValueError(
                "paired_difference: paired_seeds needs both arms to cross one seed set"
            )
        units = min(units, len(arm_a.seeds))
    boot = np.empty(n_boot)
    for i in range(n_boot):
        d_star = rng.choice(draws, len(draws))
        s_star = rng.choice(len(arm_a.seeds), len(arm_a.seeds)) if paired_seeds else None
        boot[i] = _arm_mean(arm_a, m_a[:, i + 1], d_star, rng, s_star) - _arm_mean(
            arm_b, m_b[:, i + 1], d_star, rng, s_star
        )
    boot = boot[np.isfinite(boot)]
    lo, hi = np.quantile(boot, [0.025, 0.975])
    se = float(boot.std(ddof=1))
    k = small_sample_factor(units)
    return {
        "estimate": estimate,
        "ci_low": float(estimate - k * (estimate - lo)),
        "ci_high": float(estimate + k * (hi - estimate)),
        "se": se,
        "mde": _Z_POWER * k * se,
        "pretrain_seeds": len({r.pretrain_seed for r in a_runs if r.pretrain_seed is not None}),
        "label_draws": len(draws),
        "test_cases": n,
    }


def arm_interval(runs: list[ArmRun], n_boot: int = 2000, seed: int = 0) -> dict:
    """The mean metric of one arm's runs with a 95 % interval, resampled as
    :func:`paired_difference` resamples an arm (label draws, pre-training seeds, test cases;
    widened by :func:`small_sample_factor` for few draws): ``{"estimate", "ci_low",
    "ci_high"}`` in points.

    Raises:
        ValueError: no runs, or runs tested on different test splits.
    """
    if not runs:
        raise ValueError("arm_interval: no runs")
    kind = "dice" if "dice" in runs[0].per_case else "auroc"
    sizes = {len(next(iter(r.per_case.values()))) for r in runs}
    if len(sizes) != 1 or len({r.test_split for r in runs} - {None}) > 1:
        raise ValueError(f"arm_interval: runs were tested on different splits {sizes}")
    n = sizes.pop()
    rng = np.random.default_rng(seed)
    counts = np.vstack([np.ones(n), rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot)])
    values = _metric_table(runs, kind, counts)
    draws = sorted({r.draw for r in runs})
    arm = _arm_index(runs)
    boot = np.array(
        [
            _arm_mean(arm, values[:, i + 1], rng.choice(draws, len(draws)), rng)
            for i in range(n_boot)
        ]
    )
    boot = boot[np.isfinite(boot)]
    estimate = float(values[:, 0].mean())
    lo, hi = np.quantile(boot, [0.025, 0.975])
    k = small_sample_factor(len(draws))
    return {
        "estimate": estimate,
        "ci_low": float(estimate - k * (estimate - lo)),
        "ci_high": float(estimate + k * (hi - estimate)),
    }


def small_sample_factor(units: int) -> float:
    """How much wider a percentile interval over ``units`` resampled units must be: the
    bootstrap treats the units' spread as known (z quantiles, divisor n), a mean of n units
    has a t distribution with n - 1 degrees of freedom, so the interval is expanded by
    ``t_{0.975, n-1} sqrt(n / (n - 1)) / z_{0.975}`` (Hesterberg's expanded percentile
    interval): 1.58 for 5 units, 1.15 for 20; 1 for a single unit (no spread to expand)."""
    if units < 2:
        return 1.0
    from scipy.stats import norm, t

    return float(t.ppf(0.975, units - 1) * np.sqrt(units / (units - 1)) / norm.ppf(0.975))


@dataclass(frozen=True)
class _ArmIndex:
    """Where an arm's runs are, built once per check (not once per replicate)."""

    by_draw: dict[int, int] | None  # draw -> run, when every draw has one run
    seeds: list[int | None]
    by_pair: dict[tuple[int | None, int], int]


def _arm_index(runs: list[ArmRun]) -> _ArmIndex:
    draws: dict[int, list[int]] = {}
    for k, r in enumerate(runs):
        draws.setdefault(r.draw, []).append(k)
    one_each = all(len(v) == 1 for v in draws.values())
    seeds = sorted({r.pretrain_seed for r in runs}, key=lambda s: -1 if s is None else s)
    return _ArmIndex(
        {d: v[0] for d, v in draws.items()} if one_each else None,
        seeds,
        {(r.pretrain_seed, r.draw): k for k, r in enumerate(runs)},
    )


def _arm_mean(
    arm: _ArmIndex, values: np.ndarray, d_star: np.ndarray, rng, s_star: np.ndarray | None = None
) -> float:
    """One replicate's arm mean over the resampled draws ``d_star``.

    Where every draw has one run of the arm (TS; PCRLv2 with pre-training runs paired one
    to one with the draws) a draw is the unit: its run is taken as it is, so its
    pre-training run is resampled with it. Where pre-training seeds are crossed with the
    draws, the seeds are resampled too and each resampled draw contributes the mean over the
    resampled seeds' runs (``s_star``: the seeds' indices drawn for both arms)."""
    if arm.by_draw is not None:
        return float(np.mean([values[arm.by_draw[d]] for d in d_star]))
    if s_star is None:
        s_star = rng.choice(len(arm.seeds), len(arm.seeds))
    picked = [
        values[arm.by_pair[(arm.seeds[s], d)]]
        for d in d_star
        for s in s_star
        if (arm.seeds[s], d) in arm.by_pair
    ]
    return float(np.mean(picked)) if picked else float("nan")


def verdict(ci_low: float, ci_high: float) -> str:
    """``gain`` (interval above 0), ``loss`` (below 0) or ``no detectable gain``."""
    if ci_low > 0:
        return GAIN
    if ci_high < 0:
        return LOSS
    return NONE


def verdict_table(
    records: Sequence[dict], checks: Sequence[Check] | None = None, n_boot: int = 2000
) -> pd.DataFrame:
    """One row per check (:data:`COLUMNS`, values in points); a check whose arms have no
    runs with per-case results reads ``not run``."""
    rows = []
    for c in report_checks() if checks is None else checks:
        row = {"table": c.table, "setting": c.setting, "check": c.check}
        a, b = arm_runs(records, c, c.a), arm_runs(records, c, c.b)
        try:
            res = paired_difference(a, b, n_boot) if a and b else None
        except ValueError:
            res = None
        if res is None:
            rows.append({**row, "verdict": NOT_RUN})
            continue
        rows.append(
            {
                **row,
                **{k: round(v, 2) if isinstance(v, float) else v for k, v in res.items()},
                "verdict": verdict(res["ci_low"], res["ci_high"]),
            }
        )
    table = pd.DataFrame(rows).reindex(columns=list(COLUMNS))
    counts = ["pretrain_seeds", "label_draws", "test_cases"]
    table[counts] = table[counts].astype("Int64")  # integers, empty where not run
    return table
