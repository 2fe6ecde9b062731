"""Tables are built from run records only: same rows and columns as the paper's, 'not run'
where no record exists, means over seeds, 'fail' for diverged runs."""

import pandas as pd
import pytest

from pcrl_lib.io import write_json_atomic
from pcrl_lib.paths import PUBLISHED_DIR
from pcrl_lib.tables import NOT_RUN, cell_query, load_records, regenerate, write_tables


def _record(tmp, name, **fields):
    write_json_atomic(tmp / f"{name}.json", fields)


def test_every_published_table_has_a_regenerated_counterpart(tmp_path):
    written = write_tables(tmp_path / "no_runs", tmp_path / "tables")
    published = sorted(PUBLISHED_DIR.glob("table*.csv"))
    assert [p.name for p in written] == [p.name for p in published]
    for pub in published:
        ours = pd.read_csv(tmp_path / "tables" / pub.name, dtype=str, keep_default_na=False)
        theirs = pd.read_csv(pub, dtype=str, keep_default_na=False)
        assert list(ours.columns) == list(theirs.columns)
        key_cols = [c for c in theirs.columns if cell_query(pub.stem, theirs.iloc[0], c) is None]
        pd.testing.assert_frame_equal(ours[key_cols], theirs[key_cols])
        numeric = [c for c in theirs.columns if c not in key_cols]
        assert (ours[numeric] == NOT_RUN).all().all()  # never an invented number
        assert (tmp_path / "tables" / f"{pub.stem}.md").is_file()


def test_cells_average_seeds_and_mark_failures(tmp_path):
    runs = tmp_path / "runs"
    for seed, value in enumerate((0.80, 0.90)):
        _record(
            runs,
            f"a{seed}",
            task="luna",
            protocol="semi",
            label_ratio=0.1,
            method="PCRLv2",
            seed=seed,
            metrics={"mean": value, "mean_ci": [value - 0.0392, value + 0.0392]},
        )
    _record(
        runs,
        "b",
        task="luna",
        protocol="semi",
        label_ratio=0.2,
        method="TS",
        seed=0,
        metrics={"mean": float("nan")},
    )
    values, spread = regenerate("table5_luna_semi_supervised_auroc", load_records(runs))
    row = values.set_index("method")
    assert (
        row.at["PCRLv2", "10%"] == "85.0"
        and spread.loc[values["method"] == "PCRLv2", "10%"].iloc[0] == "±5.4 (sd 5.0, n=2)"
    )
    # SE = sqrt(mean(se_test^2) + var_runs / n): each interval is 7.84 points wide, so
    # se_test = 7.84 / 3.92 = 2.0; var_runs = 50 (80 and 90, ddof 1); n = 2: sqrt(4 + 25)
    assert row.at["TS", "20%"] == "fail" and row.at["TS", "10%"] == NOT_RUN


def test_variants_and_per_class_columns(tmp_path):
    runs = tmp_path / "runs"
    _record(
        runs,
        "skip",
        task="lits",
        protocol="transfer",
        label_ratio=0.1,
        method="PCRLv2",
        variant="skip",
        seed=0,
        metrics={"mean": 0.5},
    )
    _record(
        runs,
        "nih",
        task="nih",
        protocol="semi",
        label_ratio=0.05,
        method="TS",
        seed=0,
        metrics={"mean": 0.6, "Hernia": 0.7},
    )
    recs = load_records(runs)
    t1, _ = regenerate("table1_skip_connections", recs)
    lits = t1[t1["dataset"].str.startswith("LiTS")].iloc[0]
    assert lits["with_skip"] == "50.0" and lits["without_skip"] == NOT_RUN
    t4, _ = regenerate("table4_nih_semi_supervised_auroc", recs)
    ts5 = t4[(t4["label_ratio"] == "5%") & (t4["method"] == "TS")].iloc[0]
    assert ts5["Mean"] == "60.0" and ts5["Hernia"] == "70.0" and ts5["Mass"] == "undefined"
    assert ts5["Mean"] != NOT_RUN


def test_corrupt_record_names_the_file(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: corrupt run record"):
        load_records(tmp_path)
