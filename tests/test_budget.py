import json
import shutil
import time
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from pcrl_lib import budget
from pcrl_lib.budget import (
    COMMITTED_RECORDS,
    GAIN_COLUMNS,
    PLANS,
    ROW_COLUMNS,
    STEP0_REFERENCE,
    BudgetPlan,
    gain_table,
    missing_records,
    plot_drift,
    plot_gains,
    portable_path,
    precision_changes,
    pretext_loss,
    pretrain_seconds,
    record_path,
    records_dir,
    run_name,
    run_study,
    run_summary,
    snapshot_drift,
    study_dir,
    study_rows,
    study_run_job,
    study_settings,
    write_study,
)
from pcrl_lib.io import read_json, write_json_atomic
from pcrl_lib.paths import REPO_ROOT


def test_plans_ascend_from_zero_and_reject_bad_ones():
    assert PLANS["demo"].budgets == (0, 300, 1000, 3000) and len(PLANS["demo"].seeds) >= 3
    assert set(PLANS["demo"].methods) == {"PCRLv2", "MG", "SimSiam"}
    with pytest.raises(ValueError, match="ascend"):
        BudgetPlan(budgets=(300, 0))
    with pytest.raises(ValueError, match="ascend"):
        BudgetPlan(budgets=(100, 300))
    with pytest.raises(ValueError, match="sources"):
        BudgetPlan(sources=("brats",))


def test_precision_changes_name_the_runs_a_machine_would_run_in_fp32(monkeypatch):
    plan = PLANS["demo"]
    monkeypatch.setenv("PCRL_CPU_AUTOCAST", "on")
    assert precision_changes(plan, "demo", "cpu") == []
    monkeypatch.setenv("PCRL_CPU_AUTOCAST", "off")  # as on a CPU without native bf16
    assert precision_changes(plan, "demo", "cpu") == [
        "luna pre-training: bf16 -> fp32",  # 2D pre-training is fp32 at the demo
        "luna probe and fine-tuning (luna): bf16 -> fp32",
        "nih probe and fine-tuning (nih): bf16 -> fp32",
    ]
    assert precision_changes(plan, "demo", "cuda") == []  # a GPU runs as asked
    assert precision_changes(replace(plan, sources=("nih",)), "demo", "cpu") == [
        "nih probe and fine-tuning (nih): bf16 -> fp32"
    ]


def test_study_settings_hold_the_rate_after_warm_up():
    # a constant rate: a snapshot after n steps does not depend on the run's length
    settings = study_settings("demo", 3)
    assert settings.schedule == "constant" and settings.optimizer == "adamw"
    assert settings.lr == 1e-3 and settings.warmup_steps == 20
    assert study_settings("demo", 2).batch_size == 32  # the grid's batch and views
    assert study_settings("paper", 3).optimizer == "sgd"  # the paper's


def _log(path, epochs):
    """A log of ``epochs``: (steps, seconds, losses of its steps)."""
    lines, g = [], 0
    for e, (steps, seconds, losses) in enumerate(epochs):
        for s in range(steps):
            g += 1
            lines.append(
                {"kind": "step", "epoch": e, "step": s, "global_step": g, "loss": losses[s]}
            )
        lines.append({"kind": "epoch", "epoch": e, "steps": steps, "seconds": seconds})
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")


def test_seconds_and_loss_read_from_the_log(tmp_path):
    log = tmp_path / "log.jsonl"
    _log(log, [(4, 8.0, [4, 3, 2, 1]), (4, 4.0, [1, 1, 0, 0])])
    assert pretrain_seconds(log, 4) == pytest.approx(8.0)
    assert pretrain_seconds(log, 6) == pytest.approx(10.0)  # half of the second epoch
    assert np.isnan(pretrain_seconds(log, 9))  # not reached
    assert pretext_loss(log, 4, window=2) == pytest.approx(1.5)  # steps 3 and 4
    assert pretext_loss(log, 8, window=50) == pytest.approx(12 / 8)
    assert np.isnan(pretext_loss(log, 0))


def test_repeated_steps_of_a_resumed_stage_count_once(tmp_path):
    log = tmp_path / "log.jsonl"
    rows = [{"kind": "step", "global_step": g, "loss": 5.0} for g in (1, 2)]  # killed
    rows += [{"kind": "step", "global_step": g, "loss": 1.0} for g in (1, 2)]  # again
    log.write_text("\n".join(json.dumps(x) for x in rows) + "\n")
    assert pretext_loss(log, 2) == pytest.approx(1.0)


def test_snapshot_drift_is_the_relative_change_of_the_kernels(tmp_path):
    k0 = {"encoder.a.weight": torch.ones(2, 2, 3), "encoder.b.weight": torch.ones(4, 2)}
    k1 = {"encoder.a.weight": 2 * torch.ones(2, 2, 3), "encoder.b.weight": torch.ones(4, 2)}
    for step, state in ((0, k0), (5, k1)):
        bn = {"encoder.bn.weight": torch.ones(2)}  # 1-D: not a kernel
        torch.save({"model": {**state, **bn}, "step": step}, tmp_path / f"step_{step:06d}.pt")
    drift = snapshot_drift(tmp_path, 5)
    assert drift["first"] == pytest.approx(1.0) and drift["last"] == pytest.approx(0.0)


def _per_case(scores, labels):
    return {"y_true": [[int(v)] for v in labels], "y_score": [[float(v)] for v in scores]}


def _write_records(results, n=200, seeds=(0, 1, 2)):
    """TS at chance-level scores, method M perfect after 10 steps, random at 0 steps; each
    record carries its run's summary, as :func:`measure_job` writes it."""
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 2
    base = study_dir("smoke", results)
    records = base / "records"
    ts = _per_case(rng.uniform(size=n), labels)
    for k in seeds:
        rec = {
            "method": "TS", "source": "luna", "steps": None, "pretrain_seed": None,
            "finetune": {"task": "luna", "draw": k, "per_case": ts, "test_split": "x",
                         "metrics": {"mean": 0.5, "mean_ci": [0.4, 0.6]}},
            "machine": "m",
        }  # fmt: skip
        write_json_atomic(record_path(records, "luna", "TS", k, None), rec)
    for k in seeds:
        run_dir = base / "pretrain" / run_name("luna", "M", k)
        run_dir.mkdir(parents=True)
        _log(run_dir / "log.jsonl", [(10, 20.0, [1.0] * 10)])
        for steps in (0, 10):
            state = {"encoder.w": torch.ones(3, 3) * (1 + steps / 10)}
            torch.save({"model": state, "step": steps}, run_dir / f"step_{steps:06d}.pt")
        for steps in (0, 10):
            cases = _per_case(labels if steps else rng.uniform(size=n), labels)
            rec = {
                "method": "M", "source": "luna", "steps": steps, "pretrain_seed": k,
                "finetune": {"task": "luna", "draw": k, "per_case": cases, "test_split": "x",
                             "metrics": {"mean": 1.0 if steps else 0.5, "mean_ci": [0.9, 1.0]}},
                "probe": {"draws": [0, 1, 2], "per_case": [cases] * 3, "test_split": "x"},
                "pretrain": run_summary(run_dir, steps),
                "machine": "m",
            }  # fmt: skip
            write_json_atomic(record_path(records, "luna", "M", k, steps), rec)


def test_the_run_summary_is_what_the_tables_need_of_a_run(tmp_path):
    _write_records(tmp_path, seeds=(0,))
    run_dir = study_dir("smoke", tmp_path) / "pretrain" / run_name("luna", "M", 0)
    assert run_summary(run_dir, 10) == {
        "pretext_loss": 1.0, "drift_median": 1.0, "drift_last": 1.0, "wall_s": 20.0
    }  # fmt: skip
    zero = run_summary(run_dir, 0)
    assert zero["pretext_loss"] is None and zero["drift_last"] == 0.0 and zero["wall_s"] == 0.0
    # once the records exist the tables need no run folder: a new machine has none
    shutil.rmtree(run_dir.parent)
    rows = study_rows("smoke", tmp_path)
    assert rows.loc[rows["steps"] == 10, "pretrain_wall_s"].tolist() == [20.0]
    assert np.isnan(rows.loc[rows["steps"] == 0, "pretext_loss"]).all()


def test_missing_records_lists_what_the_plan_still_needs(tmp_path):
    plan = BudgetPlan(methods=("M",), sources=("luna",), budgets=(0, 10, 20), seeds=(0, 1, 2))
    _write_records(tmp_path, seeds=(0, 1))
    records = records_dir("smoke", tmp_path)
    assert records == study_dir("smoke", tmp_path) / "records"
    assert missing_records(plan, 10, records) == [
        "luna_TS_d2",
        "luna_M_p2_s000000",
        "luna_M_p2_s000010",
    ]
    assert missing_records(replace(plan, seeds=(0, 1)), 20, records) == [
        "luna_M_p0_s000020", "luna_M_p1_s000020"
    ]  # fmt: skip
    assert missing_records(replace(plan, seeds=(0, 1)), 10, records) == []


def test_a_run_with_its_records_is_not_run_again_and_late_runs_wait(tmp_path):
    _write_records(tmp_path, seeds=(0,))
    records = records_dir("smoke", tmp_path)
    called = []
    # every record of budgets (0, 10) exists: no pre-training (its folder does not even exist)
    job = ("smoke", "luna", "M", 0, (0, 10), (0, 10), {}, tmp_path / "none", records, 2)
    row = study_run_job(*job, after_run=lambda *a: called.append(a))
    assert row["status"] == "done before" and not called and not (tmp_path / "none").exists()
    # budget 20 is missing, but the start-by time has passed: left for later, nothing written
    late = ("smoke", "luna", "M", 0, (0, 10, 20), (0, 10, 20), {}, tmp_path / "none", records, 2)
    row = study_run_job(*late, start_by=time.time() - 1)
    assert row["status"] == "not started" and not (tmp_path / "none").exists()
    with pytest.raises(ValueError, match="below the plan's first budget"):
        run_study("smoke", {}, BudgetPlan(budgets=(0, 10)), upto=5, results=tmp_path)


def test_each_budget_is_measured_as_soon_as_the_run_reaches_it(tmp_path, monkeypatch):
    # a run cut short (a session's end) keeps the records of the budgets it passed
    calls = []
    monkeypatch.setattr(budget, "pretrain_job", lambda *a: calls.append(("pretrain", a[4])))
    monkeypatch.setattr(budget, "measure_job", lambda *a: calls.append(("measure", a[4])))
    _write_records(tmp_path, seeds=(0,))
    records = records_dir("smoke", tmp_path)
    folders = {"luna": tmp_path}
    job = ("smoke", "luna", "M", 1, (0, 10, 20), (0, 10, 20), folders, tmp_path / "run", records, 2)
    after = []
    row = study_run_job(*job, after_run=lambda *a: after.append(len(calls)))
    assert row["status"] == "ran" and after == [5]
    assert calls == [
        ("pretrain", 10), ("measure", 0), ("measure", 10), ("pretrain", 20), ("measure", 20)
    ]  # fmt: skip
    # seed 0 has its records of 0 and 10 steps: one stage, to 20, and its one measurement
    calls.clear()
    study_run_job(*job[:3], 0, *job[4:])
    assert calls == [("pretrain", 20), ("measure", 20)]


def test_rows_and_gains_from_records(tmp_path):
    _write_records(tmp_path)
    rows = study_rows("smoke", tmp_path)
    assert list(rows.columns) == list(ROW_COLUMNS) and len(rows) == 6
    after = rows[rows["steps"] == 10]
    assert (after["probe_auroc"] == 100).all() and (after["finetune_auroc"] == 100).all()
    assert (after["drift_last"] == 1.0).all() and (after["pretrain_wall_s"] == 20.0).all()
    gains = gain_table("smoke", tmp_path)
    assert list(gains.columns) == list(GAIN_COLUMNS)
    cell = gains.set_index(["steps", "measure"])
    # perfect scores against the same random ones: a gain of 100 - AUROC(random)
    assert cell.loc[(10, "finetune"), "verdict"] == "gain"
    assert cell.loc[(10, "finetune"), "estimate"] > 20
    assert cell.loc[(10, "probe"), "verdict"] == "gain"
    assert cell.loc[(0, "probe"), "estimate"] == 0.0  # step 0 against itself
    rows_path, gains_path = write_study("smoke", tmp_path / "out", tmp_path)
    assert pd.read_csv(gains_path).shape == gains.shape and rows_path.is_file()
    fig = plot_gains(gains)
    assert len(fig.axes) == 2  # probe and fine-tuning, one source
    drift = plot_drift(rows)
    (line,) = [x for x in drift.axes[0].lines if x.get_linestyle() == "-"]  # the deepest kernel
    assert list(line.get_ydata()) == [0.0, 1.0]  # step 0, step 10


def test_finetune_step0_leaves_out_the_machine_that_measured_ts(tmp_path):
    # M's runs measured on another machine: their budget-0 fine-tunings score perfectly
    # where TS (same initialisation, other arithmetic) scored at chance
    _write_records(tmp_path)
    records = study_dir("smoke", tmp_path) / "records"
    for k in (0, 1, 2):
        path = record_path(records, "luna", "M", k, 0)
        rec = read_json(path)
        rec["finetune"]["per_case"] = read_json(record_path(records, "luna", "M", k, 10))[
            "finetune"
        ]["per_case"]
        rec["machine"] = "n"
        write_json_atomic(path, rec)
    cell = gain_table("smoke", tmp_path).set_index(["steps", "measure"])
    assert cell.loc[(0, "finetune"), "estimate"] > 20  # the machines' difference, as a gain
    for steps in (0, 10):  # against its own step 0 nothing changed
        assert cell.loc[(steps, "finetune_step0"), "estimate"] == 0.0
        assert cell.loc[(steps, "finetune_step0"), "reference"] == STEP0_REFERENCE
        assert cell.loc[(steps, "finetune_step0"), "verdict"] == "no detectable gain"
    assert cell.loc[(10, "finetune"), "estimate"] == cell.loc[(0, "finetune"), "estimate"]


def test_write_study_reads_the_records_once(tmp_path, monkeypatch):
    # a running study may add a record between two readings; both tables must come from one
    import pcrl_lib.budget as budget

    _write_records(tmp_path)
    reads = []
    real = budget._records
    monkeypatch.setattr(budget, "_records", lambda *where: reads.append(where) or real(*where))
    rows_path, gains_path = write_study("smoke", tmp_path / "out", tmp_path)
    assert len(reads) == 1
    rows, gains = pd.read_csv(rows_path), pd.read_csv(gains_path)
    assert set(rows["steps"]) == set(gains["steps"]) == {0, 10}


def test_a_broken_record_is_named(tmp_path):
    folder = study_dir("smoke", tmp_path) / "records"
    folder.mkdir(parents=True)
    (folder / "luna_M_p0_s000010.json.gz").write_bytes(b"{not gzip")
    with pytest.raises(ValueError, match=r"luna_M_p0_s000010.json.gz: not readable JSON"):
        study_rows("smoke", tmp_path)


def test_a_portable_path_is_relative_to_its_root_or_only_a_name(tmp_path):
    snapshot = tmp_path / "pretrain" / "nih_MG_p0" / "step_000300.pt"
    assert portable_path(snapshot, tmp_path / "pretrain") == "nih_MG_p0/step_000300.pt"
    assert portable_path(tmp_path / "demo" / "synthetic-nih", tmp_path) == "demo/synthetic-nih"
    assert portable_path(tmp_path / "elsewhere" / "x.pt", tmp_path / "pretrain") == "x.pt"
    # ".." does not escape the root unnoticed
    assert portable_path(tmp_path / "pretrain" / ".." / "y.pt", tmp_path / "pretrain") == "y.pt"


def _strings(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


def test_the_committed_records_name_no_folder_of_the_machine_that_measured_them():
    studies = REPO_ROOT / "results" / "studies"
    records = sorted(studies.glob("pretrain_budget_records*/*.gz"))  # bf16, and LUNA in fp32
    assert COMMITTED_RECORDS in {p.parent for p in records}, "the demo's records are missing"
    for path in records:
        rec = read_json(path)
        absolute = [s for s in _strings(rec) if s.startswith(("/", "~"))]
        assert not absolute, f"{path.name}: {absolute[:3]}"
        if rec["steps"] is not None:  # a snapshot, named within its run
            assert rec["finetune"]["checkpoint"] == (
                f"{run_name(rec['source'], rec['method'], rec['pretrain_seed'])}"
                f"/step_{rec['steps']:06d}.pt"
            )
