import json

import numpy as np
import pytest

from pcrl_lib.grid import record_file
from pcrl_lib.headline import (
    COLUMNS,
    HeadlineRun,
    headline_dir,
    headline_runs,
    headline_table,
    ts_runs,
)
from pcrl_lib.zoo import MANIFEST


def _zoo(folder, seeds_3d=(0, 1, 2), seeds_2d=(0,)):
    entries = [
        {"source": "luna", "method": m, "seed": k} for m in ("PCRLv2", "MG") for k in seeds_3d
    ]
    entries += [
        {"source": "nih", "method": m, "seed": k} for m in ("PCRLv2", "MG") for k in seeds_2d
    ]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).write_text(json.dumps({"steps": 300, "entries": entries}))
    return folder


def test_runs_pair_seeds_with_draws_when_the_zoo_has_enough(tmp_path):
    runs = headline_runs((0, 1, 2), _zoo(tmp_path))
    luna = [r for r in runs if r.table == "table5" and r.method == "PCRLv2"]
    assert [(r.seed, r.draw) for r in luna] == [(0, 0), (1, 1), (2, 2)]
    nih = [r for r in runs if r.table == "table4" and r.method == "MG"]
    assert [(r.seed, r.draw) for r in nih] == [(0, 0), (0, 1), (0, 2)]  # one seed, every draw
    assert not [r for r in runs if r.method == "SimSiam"]  # not in this zoo
    assert {r.table for r in runs} == {"table4", "table5", "table8"}
    assert HeadlineRun("table8", "MG", 1, 1).name == "table8_MG_p1_d1"
    # TS: the grid's compared runs (fine-tuning seed = draw)
    assert [(r.seed, r.draw) for r in ts_runs((0, 1)) if r.task == "luna"] == [(0, 0), (1, 1)]


def _record(path, draw, scores, labels, seed=None):
    cases = {"y_true": [[int(v)] for v in labels], "y_score": [[float(v)] for v in scores]}
    rec = {"draw": draw, "pretrain_seed": seed, "per_case": cases, "test_split": "d"}
    rec["metrics"] = {"mean": 0.5}  # the table's means; the gain comes from per_case
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec))


def test_table_pairs_each_method_with_ts_and_reads_not_run_without_records(tmp_path):
    zoo = _zoo(tmp_path / "zoo")
    rng = np.random.default_rng(0)
    labels = np.arange(300) % 2
    for r in ts_runs((0, 1, 2)):
        if r.task == "luna":
            _record(record_file("demo", r, tmp_path), r.draw, rng.uniform(size=300), labels)
    for r in headline_runs((0, 1, 2), zoo):
        if r.table == "table5" and r.method == "PCRLv2":
            path = headline_dir("demo", tmp_path) / f"{r.name}.json"
            _record(path, r.draw, labels + 0.1 * rng.uniform(size=300), labels, r.seed)
    table = headline_table("demo", (0, 1, 2), tmp_path, zoo)
    assert list(table.columns) == list(COLUMNS)
    row = table[(table["table"] == "table5") & (table["method"] == "PCRLv2")].iloc[0]
    # perfect scores against random ones: a clear gain, 3 seeds on 3 draws
    assert row["verdict"] == "gain" and row["estimate"] > 30
    assert (row["pretrain_seeds"], row["label_draws"], row["test_cases"]) == (3, 3, 300)
    assert row["zoo_steps"] == 300
    # counts are integers in the CSV (not 3.0), also in a column with "not run" rows
    assert "3,3,300," in table.to_csv(index=False)
    others = table[~((table["table"] == "table5") & (table["method"] == "PCRLv2"))]
    assert (others["verdict"] == "not run").all()


def test_no_manifest_is_an_error_that_says_how_to_build(tmp_path):
    from pcrl_lib.zoo import ZooError

    with pytest.raises(ZooError, match="zoo build"):
        headline_runs((0,), tmp_path)
