"""The table beyond the paper (``pcrl_lib.beyond``): every cell and method, paired gains
over TS by hand on constructed records, ``not run`` where a method has no runs."""

import numpy as np
import pytest

from pcrl_lib.beyond import COLUMNS, FILE, beyond_checks, beyond_table, write_beyond
from pcrl_lib.grid import BEYOND_CELLS, BEYOND_METHODS, beyond_cells, finetune_runs


def record(task, protocol, method, draw, dice, pretrain_seed=None):
    return {
        "task": task,
        "protocol": protocol,
        "label_ratio": 0.1,
        "method": method,
        "variant": "",
        "draw": draw,
        "pretrain_seed": pretrain_seed,
        "per_case": {"dice": [[v] for v in dice]},
        "test_split": "abc",
    }


def test_every_method_but_ts_is_checked_against_ts_on_every_cell():
    checks = beyond_checks()
    assert len(checks) == len(BEYOND_CELLS) * (len(BEYOND_METHODS) - 1) == 15
    assert {c.check for c in checks} == {
        f"{m} - TS" for m in ("MG", "BYOL", "PGL", "DrasCLR", "PCRLv2")
    }
    assert all(c.b.method == "TS" for c in checks)


@pytest.mark.parametrize("profile", ["smoke", "demo"])
def test_its_cells_run_two_paired_units_at_smoke_and_demo_every_cell_at_smoke(profile):
    runs = [r for r in finetune_runs(profile) if "beyond" in r.tables]
    cells = {"smoke": BEYOND_CELLS, "demo": [c for c in BEYOND_CELLS if c[0] == "lits"]}
    assert {(r.task, r.protocol, r.label_ratio) for r in runs} == set(cells[profile])
    for task, protocol, ratio in cells[profile]:
        for method in BEYOND_METHODS:
            units = sorted(
                (r.pretrain_seed, r.draw) for r in runs
                if (r.task, r.protocol, r.label_ratio, r.method) == (task, protocol, ratio, method)
            )  # fmt: skip
            assert units == ([(None, 0), (None, 1)] if method == "TS" else [(0, 0), (1, 1)])
            assert all(r.seed == r.draw for r in runs)


def test_gains_by_hand_and_not_run_cells():
    base = np.random.default_rng(0).uniform(0.4, 0.8, 30)
    records = []
    for d in range(3):  # LiTS: PGL = TS + 3 points on every case, MG = TS
        records.append(record("lits", "transfer", "TS", d, base))
        records.append(record("lits", "transfer", "PGL", d, base + 0.03, pretrain_seed=d))
        records.append(record("lits", "transfer", "MG", d, base, pretrain_seed=d))
    table = beyond_table(records, n_boot=200)
    assert list(table.columns) == list(COLUMNS)
    assert len(table) == len(BEYOND_CELLS) * len(BEYOND_METHODS)
    lits = table[table["setting"] == "lits transfer 10%"].set_index("method")
    assert lits.loc["PGL", "estimate"] == pytest.approx(3.0)
    assert lits.loc["PGL", "ci_low"] == pytest.approx(3.0) and lits.loc["PGL", "verdict"] == "gain"
    assert (
        lits.loc["MG", "estimate"] == pytest.approx(0.0)
        and lits.loc["MG", "verdict"] == "no detectable gain"
    )
    assert lits.loc["TS", "verdict"] == "reference"
    assert lits.loc["TS", "mean"] == pytest.approx(100 * base.mean(), abs=0.01)
    assert lits.loc["TS", "mean_low"] <= lits.loc["TS", "mean"] <= lits.loc["TS", "mean_high"]
    assert (lits.loc["PGL", "pretrain_seeds"], lits.loc["PGL", "label_draws"]) == (3, 3)
    assert lits.loc["BYOL", "verdict"] == "not run" and np.isnan(lits.loc["BYOL", "mean"])
    assert (table["mean_low"].dropna() >= 0).all() and (table["mean_high"].dropna() <= 100).all()
    luna = table[table["setting"] == "luna semi 10%"]
    assert set(luna["verdict"]) == {"not run"}


def test_a_cell_the_profile_does_not_run_reads_not_run_despite_other_tables_runs():
    # the demo runs LiTS only; Table VII keeps one draw-0 MG run and TS/PCRLv2 units on BraTS
    assert beyond_cells("demo") == (("lits", "transfer", 0.1),)
    assert beyond_cells("smoke") == beyond_cells("paper") == BEYOND_CELLS
    base = np.random.default_rng(1).uniform(0.2, 0.6, 40)
    records = [record("brats", "transfer", "MG", 0, base - 0.01, pretrain_seed=0)]
    for d in range(2):
        records.append(record("brats", "transfer", "TS", d, base))
        records.append(record("brats", "transfer", "PCRLv2", d, base, pretrain_seed=d))
        records.append(record("lits", "transfer", "TS", d, base))
        records.append(record("lits", "transfer", "PGL", d, base + 0.02, pretrain_seed=d))
    table = beyond_table(records, n_boot=100, cells=beyond_cells("demo"))
    brats = table[table["setting"] == "brats transfer 10%"]
    assert set(brats["verdict"]) == {"not run"} and brats["mean"].isna().all()
    lits = table[table["setting"] == "lits transfer 10%"].set_index("method")
    assert lits.loc["PGL", "estimate"] == pytest.approx(2.0)
    # every cell: BraTS's single MG run gives a one-unit comparison there
    every = beyond_table(records, n_boot=100).set_index(["setting", "method"])
    assert every.loc[("brats transfer 10%", "MG"), "label_draws"] == 1


def test_the_table_is_written_atomically_where_the_report_reads_it(tmp_path):
    table = beyond_table([], n_boot=10)
    path = write_beyond(table, tmp_path)
    assert path == tmp_path / FILE
    assert path.read_text().splitlines()[0] == ",".join(COLUMNS)
    assert not list(tmp_path.glob("*.tmp*"))
