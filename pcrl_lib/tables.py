"""The paper's tables regenerated from run records - and from nothing else.

For every CSV of ``results/published/`` the regenerated table has the same file name, the
same columns and the same row keys; each numeric cell is looked up as a query on the run
records (:func:`cell_query`): task, protocol, label ratio, method and variant, and the metric.
A cell is the mean over its runs (seeds, label draws, pre-training seeds), in percent with
one decimal; a cell without a record reads ``not run``; a run that diverged (NaN metric)
reads ``fail``, as the paper prints it; a per-class AUROC without positives in the test
split reads ``undefined``. Every cell's standard error (:func:`cell_standard_error`) goes
into the Markdown rendering beside it.

Variants (the ``variant`` field of a record; empty for the full PCRLv2): ``skip`` (Table I,
with skip connections), ``crossed`` (Table II), ``row0`` ... ``row5`` (Table III; row 6 is the
full method).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pcrl_lib.io import write_text_atomic
from pcrl_lib.paths import PUBLISHED_DIR

NOT_RUN, FAIL, UNDEFINED = "not run", "fail", "undefined"


@dataclass(frozen=True)
class Query:
    """Which runs fill a cell, and which metric of theirs."""

    task: str
    protocol: str
    label_ratio: float
    method: str
    metric: str = "mean"
    variant: str = ""


def _ratio(text: str) -> float:
    return float(str(text).strip().rstrip("%")) / 100


def cell_query(table: str, row: pd.Series, column: str) -> Query | None:
    """The query of one cell of ``table`` (a published file's stem); ``None`` for the row-key
    and description columns, which are copied."""
    if table.startswith("table1_"):
        if column not in ("without_skip", "with_skip"):
            return None
        task = {"NIH": "nih", "BraTS": "brats", "LiTS": "lits"}[str(row["dataset"]).split()[0]]
        protocol = "semi" if task == "nih" else "transfer"
        return Query(
            task,
            protocol,
            _ratio(row["label_ratio"]),
            "PCRLv2",
            variant="skip" if column == "with_skip" else "",
        )
    if table.startswith("table2_"):
        if column not in ("pairwise", "crossed"):
            return None
        return Query(
            "nih", "semi", 0.05, "PCRLv2", variant="crossed" if column == "crossed" else ""
        )
    if table.startswith("table3_"):
        variant = "" if int(row["row"]) == 6 else f"row{int(row['row'])}"
        if column in ("WT_BraTS_dice", "ET_BraTS_dice"):
            return Query("brats", "transfer", 0.1, "PCRLv2", column.split("_")[0], variant)
        if column == "NIH_auroc":
            return Query("nih", "transfer", 0.5, "PCRLv2", "mean", variant)
        return None
    if table.startswith(("table4_", "table6_", "table7_")):
        if column in ("label_ratio", "method"):
            return None
        task, protocol = {
            "table4_": ("nih", "semi"),
            "table6_": ("nih", "transfer"),
            "table7_": ("brats", "transfer"),
        }[table[:7]]
        metric = "mean" if column == "Mean" else column
        return Query(task, protocol, _ratio(row["label_ratio"]), str(row["method"]), metric)
    if table.startswith(("table5_", "table8_")):
        if column == "method":
            return None
        task, protocol = ("luna", "semi") if table.startswith("table5_") else ("lits", "transfer")
        return Query(task, protocol, _ratio(column), str(row["method"]))
    raise ValueError(f"no layout known for table {table!r}")


def load_records(folder: str | os.PathLike) -> list[dict]:
    """Every ``*.json`` run record under ``folder`` (none if it does not exist); a corrupt
    record stops with its path."""
    folder = Path(folder)
    records = []
    for path in sorted(folder.glob("**/*.json")) if folder.is_dir() else []:
        try:
            rec = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: corrupt run record ({err})") from err
        missing = [
            k for k in ("task", "protocol", "label_ratio", "method", "metrics") if k not in rec
        ]
        if missing:
            raise ValueError(f"{path}: run record lacks {missing}")
        records.append(rec)
    return records


def _matches(rec: dict, q: Query) -> bool:
    return (
        rec["task"] == q.task
        and rec["protocol"] == q.protocol
        and math.isclose(float(rec["label_ratio"]), q.label_ratio)
        and rec["method"] == q.method
        and rec.get("variant", "") == q.variant
    )


def cell_values(records: Iterable[dict], q: Query) -> list[float]:
    """The metric of every matching record (one per seed), in percent; NaN for a run that
    diverged (its mean metric is NaN) and ``inf`` for a metric undefined on the test split
    (a class without positives) in a run that otherwise worked."""
    out = []
    for rec in records:
        if _matches(rec, q):
            mean = rec["metrics"].get("mean", float("nan"))
            value = rec["metrics"].get(q.metric, float("nan"))
            if mean is None or not np.isfinite(float(mean)):
                out.append(float("nan"))
            elif value is None or not np.isfinite(float(value)):
                out.append(float("inf"))
            else:
                out.append(100 * float(value))
    return out


def cell_standard_error(records: Iterable[dict], q: Query) -> float | None:
    """The standard error (points) of a cell's estimate, the mean of its ``n`` runs.

    Two parts: the test split's sampling error, which every run of the cell shares (they are
    tested on the same cases, so averaging runs does not shrink it) - each run's bootstrap
    95 % interval over test cases gives ``se_test = width / 3.92``, and their mean square is
    used - and the runs' own spread (seeds, label draws, pre-training runs) divided by
    ``n``: ``sqrt(mean(se_test^2) + var_runs / n)``. ``None`` when no run has an interval.
    """
    ses, values = [], []
    for rec in records:
        if not _matches(rec, q):
            continue
        ci = rec["metrics"].get(f"{q.metric}_ci")
        value = rec["metrics"].get(q.metric)
        if ci is None or value is None or not np.all(np.isfinite(np.asarray(ci, float))):
            continue
        ses.append(100 * (float(ci[1]) - float(ci[0])) / 3.92)
        values.append(100 * float(value))
    if not ses:
        return None
    between = float(np.var(values, ddof=1)) / len(values) if len(values) > 1 else 0.0
    return float(np.sqrt(np.mean(np.square(ses)) + between))


def regenerate(
    table: str, records: list[dict], published_dir: str | os.PathLike = PUBLISHED_DIR
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The regenerated table (same columns and row keys as the published one) and a table of
    the same shape holding each cell's standard error (:func:`cell_standard_error`), the
    spread of its runs (std) and their number: ``±SE (sd S, n=N)``."""
    published = pd.read_csv(Path(published_dir) / f"{table}.csv", dtype=str, keep_default_na=False)
    values = published.copy()
    spread = pd.DataFrame("", index=published.index, columns=published.columns)  # keys: none
    for i, row in published.iterrows():
        for col in published.columns:
            q = cell_query(table, row, col)
            if q is None:
                continue
            v = cell_values(records, q)
            if not v:
                values.at[i, col], spread.at[i, col] = NOT_RUN, ""
            elif np.isnan(v).any():
                values.at[i, col], spread.at[i, col] = FAIL, ""
            elif np.isinf(v).any():
                values.at[i, col], spread.at[i, col] = UNDEFINED, ""
            else:
                values.at[i, col] = f"{np.mean(v):.1f}"
                se = cell_standard_error(records, q)
                se_text = f"±{se:.1f} " if se is not None else ""
                spread.at[i, col] = f"{se_text}(sd {np.std(v):.1f}, n={len(v)})"
    return values, spread


def to_markdown(values: pd.DataFrame, spread: pd.DataFrame | None = None) -> str:
    """A Markdown table; cells with a spread show it after the value."""
    cols = list(values.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for i in range(len(values)):
        cells = []
        for c in cols:
            v = str(values.iat[i, values.columns.get_loc(c)])
            s = "" if spread is None else str(spread.iat[i, spread.columns.get_loc(c)])
            cells.append(f"{v} {s}".strip() if s and s != v else v)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_tables(
    runs_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    published_dir: str | os.PathLike = PUBLISHED_DIR,
    only: Iterable[str] | None = None,
) -> list[Path]:
    """Regenerate the published tables (``only``: those whose names start with one of these,
    e.g. ``("table4", "table6")``; default all) from the records under ``runs_dir`` into
    ``out_dir``: ``<name>.csv`` and ``<name>.md`` each, written atomically."""
    records = load_records(runs_dir)
    written = []
    prefixes = tuple(f"{p}_" for p in only) if only is not None else ("table",)
    for csv in sorted(Path(published_dir).glob("table*.csv")):
        if not csv.stem.startswith(prefixes):
            continue
        values, spread = regenerate(csv.stem, records, published_dir)
        written.append(write_text_atomic(Path(out_dir) / csv.name, values.to_csv(index=False)))
        write_text_atomic(Path(out_dir) / f"{csv.stem}.md", to_markdown(values, spread))
    return written
