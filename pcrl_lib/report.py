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
from pcrl_lib.tables import NOT_RUN, Query, cell_query, cell_values


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


PROFILE_NOTES = {
    "smoke": (
        "Tiny synthetic data and a few steps per run: the numbers mean nothing; this page "
        "shows that every table, figure and check is produced."
    ),
    "demo": (
        "Synthetic data at CPU scale, each method pre-trained for a few dozen steps (the "
        "paper: about 10^5): the tables test the pipeline and the measurement, not the "
        "paper's claims, and a delta to the paper's number says how far this scale is from "
        "it, not how well the method reproduces. Where pre-training starts to help on this "
        "data is the budget study's question (notebook 08)."
    ),
    "paper": (
        "The real datasets at the paper's settings (Sec. 4.3): numbers comparable with the "
        "paper's, each with its standard error."
    ),
}
VERDICT_COLOURS = {
    "gain": "#c8e6c9",
    "loss": "#ffcdd2",
    "no detectable gain": "#eeeeee",
    "not run": "#ffffff",
}


def parse_se(text: str) -> float | None:
    """The standard error in a spread cell ``"±1.2 (sd 0.3, n=5)"`` (``None`` if absent)."""
    text = str(text)
    if not text.startswith("±"):
        return None
    try:
        return float(text[1:].split()[0])
    except (ValueError, IndexError):
        return None


def _numeric_columns(table: str, paper: pd.DataFrame) -> list[str]:
    return [c for c in paper.columns if any(cell_query(table, r, c) for _, r in paper.iterrows())]


def _row_keys(table: str, paper: pd.DataFrame) -> list[str]:
    keys = [c for c in paper.columns if c not in _numeric_columns(table, paper)]
    return [" / ".join(str(r[c]) for c in keys) for _, r in paper.iterrows()]


def comparison_figure(table: str, ours: pd.DataFrame, spread: pd.DataFrame, paper: pd.DataFrame):
    """The paper's value (x) and ours (o, with a 95 % interval of +-1.96 standard errors)
    for every cell of ``table``: one panel per numeric column (label ratio, dataset), one
    line per row (method, variant). Cells not run show the paper's value alone."""
    import matplotlib.pyplot as plt

    columns = _numeric_columns(table, paper)
    keys = _row_keys(table, paper)
    fig, axes = plt.subplots(
        1, len(columns), figsize=(min(16, 2.6 * len(columns) + 2.4), 0.32 * len(keys) + 1.4),
        sharey=True, squeeze=False,
    )  # fmt: skip
    y = np.arange(len(keys))
    for ax, col in zip(axes[0], columns, strict=True):
        p = np.array([_number(v) if v is not None else None for v in paper[col]], dtype=float)
        o = np.array([_number(v) for v in ours[col]], dtype=float)
        se = np.array([parse_se(s) or np.nan for s in spread[col]], dtype=float)
        ax.plot(p, y, "x", color="black", label="paper")
        ax.errorbar(o, y, xerr=1.96 * np.nan_to_num(se), fmt="o", color="tab:blue", label="ours")
        ax.set_title(str(col), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(y, keys)
    axes[0][0].invert_yaxis()
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.suptitle(table, fontsize=9)
    fig.tight_layout()
    return fig


def figure_tag(fig, width: int = 1000) -> str:
    """An ``<img>`` of a matplotlib figure, PNG embedded (the figure is closed)."""
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode()
    return f'<img src="data:image/png;base64,{data}" style="max-width:{width}px">'


def cells_html(table: str, values: pd.DataFrame, spread: pd.DataFrame) -> str:
    """A regenerated table as HTML: row keys once, each cell's mean with its standard error
    and, smaller, the runs' sd and count. Rows with no cell run at this profile are left out
    and counted in a sentence below (the paper's table, printed next, has them all)."""
    numeric = list(_numeric_columns(table, values))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in values.columns)
    empty = (
        values[numeric].astype(str).eq(NOT_RUN).all(axis=1)
        if numeric
        else pd.Series(False, index=values.index)
    )
    rows = []
    for i in range(len(values)):
        if empty.iloc[i]:
            continue
        cells = []
        for c in values.columns:
            v = html.escape(str(values.at[i, c]))
            s = str(spread.at[i, c]) if c in numeric else ""
            if s:
                se, _, rest = s.partition(" ")
                v += f" {html.escape(se)} <small>{html.escape(rest)}</small>"
            cells.append(f"<td>{v}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    out = f"<table><tr>{head}</tr>{''.join(rows)}</table>"
    n = int(empty.sum())
    if n:
        out += f"<p>{n} row{'s' if n != 1 else ''} not run at this profile (not shown).</p>"
    return out


def verdicts_html(verdicts: pd.DataFrame) -> str:
    """The verdicts table, each row coloured by its verdict (no JavaScript); the checks not
    run at this profile follow in one sentence, counted per table, not as empty rows."""
    cols = [
        c
        for c in ("table", "setting", "check", "estimate", "ci_low", "ci_high", "verdict", "mde")
        if c in verdicts.columns
    ]
    not_run = verdicts["verdict"].astype(str).eq("not run")
    head = "".join(f"<th>{c}</th>" for c in cols)
    rows = []
    for _, r in verdicts[~not_run].iterrows():
        colour = VERDICT_COLOURS.get(str(r.get("verdict")), "#ffffff")
        cells = "".join(f"<td>{'' if pd.isna(r[c]) else html.escape(str(r[c]))}</td>" for c in cols)
        rows.append(f'<tr style="background:{colour}">{cells}</tr>')
    out = f"<table><tr>{head}</tr>{''.join(rows)}</table>"
    if not_run.any():
        counts = verdicts[not_run].groupby("table", sort=False).size()
        listed = ", ".join(f"{html.escape(str(t))} ({n})" for t, n in counts.items())
        n = int(not_run.sum())
        out += f"<p>Not run at this profile: {n} check{'s' if n != 1 else ''} - {listed}.</p>"
    return out


def run_summary(profile: str, records: list[dict], pretrain_wall_s: list[float]) -> str:
    """The run's profile, size, compute (``pretrain_wall_s``: one per finished pre-training
    run), machine and code version, as an HTML list."""
    from pcrl_lib.perf import machine_description

    finetune_s = sum(float(r.get("wall_s") or 0.0) for r in records)
    versions = sorted({str(r.get("code_version")) for r in records if r.get("code_version")})
    items = [
        f"profile <b>{html.escape(profile)}</b>: {html.escape(PROFILE_NOTES.get(profile, ''))}",
        f"{len(records)} fine-tuning runs, {finetune_s / 60:.1f} CPU/GPU minutes of fine-tuning",
    ]
    if pretrain_wall_s:
        minutes = sum(pretrain_wall_s) / 60
        items.append(f"{len(pretrain_wall_s)} pre-training runs, {minutes:.1f} minutes")
    items.append(f"machine: {html.escape(machine_description())}")
    items.append(f"code version: {html.escape(', '.join(versions) or 'unknown')}")
    return "<ul>" + "".join(f"<li>{x}</li>" for x in items) + "</ul>"


def orderings_html(checks: pd.DataFrame) -> str:
    """The orderings of cell means: a count per check, then only the settings where both
    cells ran (the rest read ``not run`` and are counted, not listed)."""
    done = checks[checks["holds"].notna()]
    counts = checks.groupby("check")["holds"].agg(
        lambda s: (
            f"{int(s.eq(True).sum())} hold of {int(s.notna().sum())} checked "
            f"({int(s.isna().sum())} not run)"
        )
    )
    out = counts.to_frame("result").to_html()
    if len(done):
        out += done.to_html(index=False)
    return out
