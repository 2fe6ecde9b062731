"""The reproduction report: regenerated tables beside the paper's, the paper's orderings
checked on the run records, and one self-contained HTML page (notebook 07)."""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path

import numpy as np
import pandas as pd

from pcrl_lib.grid import MAIN_TABLES
from pcrl_lib.io import write_text_atomic
from pcrl_lib.tables import Query, cell_query, cell_values


def _number(text) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


def side_by_side(table: str, ours: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """One row per numeric cell of ``table``: its row key, column, the paper's value, ours
    and the delta (ours - paper, percentage points; empty where either is not a number)."""
    rows = []
    for i, prow in paper.iterrows():
        key = " / ".join(str(prow[c]) for c in paper.columns if cell_query(table, prow, c) is None)
        for col in paper.columns:
            if cell_query(table, prow, col) is None:
                continue
            a, b = _number(prow[col]), _number(ours.at[i, col])
            rows.append(
                {
                    "row": key,
                    "column": col,
                    "paper": prow[col],
                    "ours": ours.at[i, col],
                    "delta": round(b - a, 1) if a is not None and b is not None else None,
                }
            )
    return pd.DataFrame(rows)


def seed_stats(values) -> tuple[float, float, int] | None:
    """``(mean, std, n)`` of a cell's finite values over seeds (population std), ``None``
    when there are none - what the checks compare."""
    v = [float(x) for x in values if np.isfinite(x)]
    return (float(np.mean(v)), float(np.std(v)), len(v)) if v else None


def seed_spread(a: tuple[float, float, int], b: tuple[float, float, int]) -> float:
    """The spread a gap between two cells must exceed to count ("PCRLv2 - TS > seed
    spread"): the sum of their standard deviations over seeds (:func:`seed_stats`)."""
    return a[1] + b[1]


def _stats(records: list[dict], q: Query) -> tuple[float, float, int] | None:
    return seed_stats(cell_values(records, q))


def _check(name: str, setting: str, a, b, strict: bool = True, margin: float = 0.0) -> dict:
    if a is None or b is None:
        return {"check": name, "setting": setting, "holds": None, "detail": "not run"}
    holds = a[0] - b[0] > margin if strict else a[0] - b[0] >= margin
    detail = f"{a[0]:.1f} vs {b[0]:.1f}"
    if margin:
        detail += f" (gap {a[0] - b[0]:.1f}, spread {margin:.1f})"
    return {"check": name, "setting": setting, "holds": bool(holds), "detail": detail}


def ordering_checks(records: list[dict]) -> pd.DataFrame:
    """Whether the paper's orderings of cell means hold in the records, one row per check
    and setting: PCRLv2 > PCRLv1 and PCRLv1 > TS at every ratio of Tables IV-VIII.

    These compare means only (most cells hold one run); the checks the report gives a
    verdict with an interval - PCRLv2 vs TS at the lowest ratios, the ablations of
    Tables I-III - are :mod:`pcrl_lib.verdicts`'. ``holds`` is ``None`` where a run is
    missing."""
    rows = []
    for spec in MAIN_TABLES.values():
        for ratio in spec.ratios:
            q = {m: Query(spec.task, spec.protocol, ratio, m) for m in ("PCRLv2", "PCRLv1", "TS")}
            s = {m: _stats(records, qq) for m, qq in q.items()}
            setting = f"{spec.name} {ratio:.0%}"
            rows.append(_check("PCRLv2 > PCRLv1", setting, s["PCRLv2"], s["PCRLv1"]))
            rows.append(_check("PCRLv1 > TS", setting, s["PCRLv1"], s["TS"]))
    return pd.DataFrame(rows)


def image_tag(path: str | os.PathLike, width: int = 900) -> str:
    """An ``<img>`` with the PNG embedded, so the page stands alone."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" style="max-width:{width}px">'


def write_html(path: str | os.PathLike, title: str, sections: list[tuple[str, str]]) -> Path:
    """Write one HTML page (atomically): a title and ``(heading, html body)`` sections."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;"
        "padding:2px 6px}th{background:#eee}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for heading, body in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>\n{body}")
    parts.append("</body></html>")
    return write_text_atomic(path, "\n".join(parts))
