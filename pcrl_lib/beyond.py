"""Beyond the paper: PCRLv2 against its local relatives on the 3D tasks.

``results/<profile>/tables/beyond_local_ssl.csv``: PCRLv2, PGL, DrasCLR, BYOL and MG, each
pre-trained on LUNA, and TS, fine-tuned on the LUNA candidates (10 % labels), LUNA -> LiTS
and LUNA -> BraTS (10 %) - the lowest label ratios of Tables V, VIII and VII
(:data:`pcrl_lib.grid.BEYOND_CELLS`). The grid runs every cell as a compared cell: the same
label draws for every method, pre-training seed ``d`` with draw ``d``. One row per cell and
method: the method's mean with its 95 % interval (:func:`pcrl_lib.verdicts.arm_interval`,
cut to the metric's range [0, 100]: with two units its small-sample expansion runs past it)
and, but for TS, the paired gain over TS with its interval and verdict
(:func:`pcrl_lib.verdicts.verdict_table`), in points.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from pcrl_lib.grid import BEYOND_CELLS, BEYOND_METHODS
from pcrl_lib.io import write_text_atomic
from pcrl_lib.verdicts import (
    DIFFERENCE_COLUMNS,
    NOT_RUN,
    Arm,
    Check,
    arm_interval,
    arm_runs,
    verdict_table,
)

FILE = "beyond_local_ssl.csv"
COLUMNS = ("setting", "method", "mean", "mean_low", "mean_high", *DIFFERENCE_COLUMNS)


def beyond_checks(cells: Sequence[tuple[str, str, float]] = BEYOND_CELLS) -> list[Check]:
    """Every method but TS against TS on every cell of ``cells`` (default: the table's)."""
    return [
        Check(
            "beyond",
            f"{task} {protocol} {ratio:.0%}",
            f"{m} - TS",
            task,
            protocol,
            ratio,
            Arm(m),
            Arm("TS"),
        )  # fmt: skip
        for task, protocol, ratio in cells
        for m in BEYOND_METHODS
        if m != "TS"
    ]


def beyond_table(
    records: Sequence[dict],
    n_boot: int = 2000,
    cells: Sequence[tuple[str, str, float]] = BEYOND_CELLS,
) -> pd.DataFrame:
    """The table (:data:`COLUMNS`; module docstring) from run records (every record of the
    run folder: a run the table shares with Tables V, VII or VIII counts once, by its
    task, ratio, method and draw); a cell a method has no runs in reads ``not run``, and so
    does every row of a cell outside ``cells`` - those the profile runs
    (:func:`pcrl_lib.grid.beyond_cells`), so that the single draw-0 runs other tables keep
    there (e.g. MG's in Table VII) never stand in for the table's paired units."""
    gains = verdict_table(records, beyond_checks(cells), n_boot).set_index("check")
    rows = []
    for task, protocol, ratio in BEYOND_CELLS:
        setting = f"{task} {protocol} {ratio:.0%}"
        for method in BEYOND_METHODS:
            cell = Check("beyond", setting, method, task, protocol, ratio, Arm(method), Arm(method))
            if (task, protocol, ratio) not in cells:
                rows.append({"setting": setting, "method": method, "verdict": NOT_RUN})
                continue
            runs = arm_runs(records, cell, Arm(method))
            row: dict = {"setting": setting, "method": method}
            if runs:
                mean = arm_interval(runs, n_boot)
                row.update(  # a metric in points: its interval cut to [0, 100]
                    mean=round(mean["estimate"], 2),
                    mean_low=round(max(mean["ci_low"], 0.0), 2),
                    mean_high=round(min(mean["ci_high"], 100.0), 2),
                )
            if method == "TS":
                row["verdict"] = "reference" if runs else NOT_RUN
            else:
                gain = gains[gains["setting"] == setting].loc[f"{method} - TS"]
                row.update({k: gain[k] for k in DIFFERENCE_COLUMNS})
            rows.append(row)
    table = pd.DataFrame(rows).reindex(columns=list(COLUMNS))
    counts = ["pretrain_seeds", "label_draws", "test_cases"]
    table[counts] = table[counts].astype("Int64")
    return table


def write_beyond(table: pd.DataFrame, folder: str | os.PathLike) -> Path:
    """``<folder>/beyond_local_ssl.csv``, atomically."""
    return write_text_atomic(Path(folder) / FILE, table.to_csv(index=False))
