"""The paper-shapes check (``pcrl_lib.paper_check``): the grid's workloads and their
extrapolation by hand, a measured step, accumulation, the out-of-memory fallback, and the
whole check at reduced batch through the CLI."""

import json
import math

import pytest
import torch

from pcrl_lib import paper_check
from pcrl_lib.cli import main
from pcrl_lib.grid import finetune_runs, pretrain_runs
from pcrl_lib.paper_check import Workload, measure, samples, workloads


def by_name():
    return {w.name: w for w in workloads()}


def test_samples_are_seventy_percent_of_the_papers_datasets():
    assert samples("luna") == 622  # 888 scans * 0.7 = 621.6
    assert samples("nih") == 78_484  # 112,120 * 0.7
    assert samples("lits", 0.1) == 9  # 131 * 0.7 * 0.1 = 9.17
    assert samples("brats", 0.0001) == 1  # never zero


def test_workloads_cover_every_run_of_the_paper_grid_once():
    ws = workloads()
    assert len({w.name for w in ws}) == len(ws) == 40  # 36 pre-training, 4 tasks
    assert sum(w.runs for w in ws) == len(pretrain_runs("paper")) + len(finetune_runs("paper"))
    assert [w.kind for w in ws] == ["pretrain"] * 36 + ["finetune"] * 4


def test_steps_are_240_epochs_of_the_training_split():
    w = by_name()
    # 3 pre-training seeds * 240 epochs * ceil(622 / 32) = 3 * 240 * 20
    assert (w["luna_PCRLv2"].runs, w["luna_PCRLv2"].batch, w["luna_PCRLv2"].steps) == (
        3,
        32,
        14_400,
    )
    # one run * 240 * ceil(78,484 / 256) = 240 * 307
    assert (w["nih_MG"].runs, w["nih_MG"].batch, w["nih_MG"].steps) == (1, 256, 73_680)
    # LUNA candidates at ratios 0.1 .. 0.4 of 11,989: between 240 * ceil(1,199 / 32) = 9,120
    # and 240 * ceil(4,796 / 32) = 36,000 steps per run
    luna = w["finetune_luna"]
    assert luna.batch == 32 and 9_120 <= luna.steps_per_run <= 36_000
    assert w["finetune_lits"].batch == w["finetune_brats"].batch == 4
    assert w["finetune_nih"].batch == 512


def test_a_measured_step_extrapolates_to_the_run_and_the_grid():
    w = by_name()["nih_MG"]
    row = measure(w, "cpu", max_batch=2)
    assert (row["micro_batch"], row["accumulation"], row["accumulated"]) == (2, 128, False)
    assert row["step_s"] > 0 and row["peak_mb"] >= 0
    assert row["run_hours"] == pytest.approx(row["step_s"] * 73_680 / 3600, rel=1e-3)
    assert row["total_hours"] == pytest.approx(row["run_hours"] * w.runs, rel=1e-3)


def test_one_step_on_two_sources_is_measured_once(monkeypatch):
    seen = []
    real = paper_check.measure
    monkeypatch.setattr(paper_check, "measure", lambda w, *a: (seen.append(w.name), real(w, *a))[1])
    result = paper_check.check("cpu", 2, only=["nih_MG", "chexpert_MG"], isolate=False)
    chexpert, nih = result["rows"]  # in the grid's order
    assert seen == ["chexpert_MG"]  # the grid lists CheXpert's pre-training first
    assert nih["measured_as"] == "chexpert_MG" and nih["step_s"] == chexpert["step_s"]
    w = by_name()
    assert nih["run_hours"] == pytest.approx(nih["step_s"] * w["nih_MG"].steps / 3600, abs=1e-3)
    assert chexpert["run_hours"] == pytest.approx(
        chexpert["step_s"] * w["chexpert_MG"].steps / 3600, abs=1e-3
    )


def test_accumulation_runs_every_micro_batch_when_asked(monkeypatch):
    calls = []
    real = paper_check._finetune_parts

    def counting(w, micro, seed=0):
        model, batch, loss_fn = real(w, micro, seed)
        return model, batch, lambda m, b: (calls.append(1), loss_fn(m, b))[1]

    monkeypatch.setattr(paper_check, "_finetune_parts", counting)
    small = Workload("finetune", "finetune_luna", "", "luna", "", 3, batch=4, runs=1, steps=10)
    row = measure(small, "cpu", max_batch=2, accumulate=True)
    assert (row["micro_batch"], row["accumulation"], row["accumulated"]) == (2, 2, True)
    assert len(calls) == 2 * 2  # two steps of two micro-batches
    calls.clear()
    measure(small, "cpu", max_batch=2, accumulate=False)
    assert len(calls) == 2  # one micro-batch per step, counted twice in step_s


def test_out_of_memory_halves_the_micro_batch_until_it_fits(monkeypatch):
    tried = []

    def fake(w, device, micro, dtype, accumulate):
        tried.append(micro)
        if micro > 8:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return {"micro_batch": micro}

    monkeypatch.setattr(paper_check, "_measure", fake)
    assert measure(by_name()["luna_MG"], "cpu")["micro_batch"] == 8
    assert tried == [32, 16, 8]
    monkeypatch.setattr(
        paper_check, "_measure", lambda *a: (_ for _ in ()).throw(torch.OutOfMemoryError("oom"))
    )
    with pytest.raises(torch.OutOfMemoryError):
        measure(by_name()["luna_MG"], "cpu")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--profile", "demo", "--check"], "--profile paper"),
        (["--profile", "paper", "--check", "--max-batch", "0"], "--max-batch must be >= 1"),
        (
            ["--profile", "paper", "--check", "--only", "luna_Nope"],
            "unknown workloads ['luna_Nope']",
        ),
    ],
)
def test_check_refuses_bad_arguments_before_measuring(args, message, capsys, tmp_path):
    assert main(["grid", *args, "--results", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.rglob("*.json"))


@pytest.mark.slow
def test_the_whole_paper_grid_runs_two_steps_at_reduced_batch(tmp_path, capsys):
    """Every workload of the paper grid at the paper's shapes, micro-batch 1 (pre-training
    2), bf16, each in a fresh process: nothing fails at the paper's sizes."""
    assert main(
        ["grid", "--profile", "paper", "--check", "--max-batch", "1", "--dtype", "bf16",
         "--results", str(tmp_path)]
    ) == 0  # fmt: skip
    out = capsys.readouterr().out
    result = json.loads((tmp_path / "paper" / "paper_check.json").read_text())
    rows = result["rows"]
    assert len(rows) == 40
    assert result["runs"] == len(pretrain_runs("paper")) + len(finetune_runs("paper"))
    for r in rows:
        assert r["name"] in out
        assert r["micro_batch"] == (2 if r["kind"] == "pretrain" else 1)
        assert r["accumulation"] == math.ceil(r["batch"] / r["micro_batch"])
        assert r["step_s"] > 0 and r["peak_mb"] > 0, r
    total = sum(r["run_hours"] * r["runs"] for r in rows)
    assert result["device_hours"] == pytest.approx(total, abs=0.1)
    assert json.loads(out.strip().splitlines()[-1])["device_hours"] == result["device_hours"]
