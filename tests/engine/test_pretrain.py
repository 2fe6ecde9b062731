import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pcrl_lib.engine.common import cosine_lr
from pcrl_lib.engine.pretrain import (
    PretrainConfig,
    learning_rate,
    pretrain,
    sample_seed,
    snapshot_path,
)
from tests.engine.tiny_run import build

SCRIPT = Path(__file__).with_name("tiny_run.py")


def _weights(path):
    return torch.load(path, weights_only=True)["model"]


def test_cosine_lr_and_sample_seeds():
    assert cosine_lr(0.01, 0, 10) == pytest.approx(0.01)
    assert cosine_lr(0.01, 5, 10) == pytest.approx(0.005)
    assert sample_seed(0, 1, 2) == sample_seed(0, 1, 2) != sample_seed(0, 2, 1)


def test_run_writes_log_and_checkpoint(tmp_path):
    method, data, cfg = build(epochs=2)
    summary = pretrain(method, data, cfg, tmp_path)
    assert summary["epochs_run"] == 2
    drift = summary["encoder_drift"]  # the encoder's kernels moved from their initial values
    assert set(drift) == {"first", "median", "mean", "last"} and drift["first"] > 0
    lines = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    steps = [x for x in lines if x["kind"] == "step"]
    epochs = [x for x in lines if x["kind"] == "epoch"]
    assert len(steps) == 4 and [e["epoch"] for e in epochs] == [0, 1]
    assert {"loss", "restoration", "global_global", "local_global", "collapse_std", "lr"} <= set(
        steps[0]
    )
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 1
    # a second call on a finished run resumes after the last epoch: nothing left to do
    again = pretrain(*build(epochs=2), tmp_path)
    assert again["epochs_run"] == 0 and again["encoder_drift"] is None  # initial weights not kept


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights(tmp_path):
    """SIGKILL inside an epoch (a separate process, after its fifth step of 2-step epochs):
    the resumed run does not redo the finished epochs, and its weights, optimiser state and
    random state end equal to an uninterrupted run's."""
    full, killed = tmp_path / "full", tmp_path / "killed"
    subprocess.run([sys.executable, str(SCRIPT), str(full), "6"], check=True)
    proc = subprocess.Popen([sys.executable, str(SCRIPT), str(killed), "6"])
    log = killed / "log.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:  # kill inside the third epoch, after two checkpoints
        if log.exists() and sum('"kind": "step"' in x for x in log.read_text().splitlines()) >= 5:
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = [json.loads(x) for x in log.read_text().splitlines()]
    finished = [x["epoch"] for x in before if x["kind"] == "epoch"]
    assert 2 <= len(finished) < 6 and finished == list(range(len(finished)))
    subprocess.run([sys.executable, str(SCRIPT), str(killed), "6"], check=True)
    after = [json.loads(x) for x in log.read_text().splitlines()][len(before) :]
    # the resumed process starts at the first unfinished epoch, never at 0
    assert after[0]["kind"] == "step" and after[0]["epoch"] == len(finished)
    epochs = [x["epoch"] for x in before + after if x["kind"] == "epoch"]
    assert epochs == list(range(6))  # each epoch finished once
    a = torch.load(full / "last.pt", weights_only=True)
    b = torch.load(killed / "last.pt", weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert torch.equal(a["torch_rng"], b["torch_rng"]) and a["step"] == b["step"] == 12
    for sa, sb in zip(
        a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True
    ):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)  # momentum buffers too


def test_nan_loss_stops_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    method, data, cfg = build(epochs=3)
    pretrain(method, data, PretrainConfig(**{**cfg.__dict__, "epochs": 1}), tmp_path)
    original = method.forward

    def poisoned(batch, progress=0.0):
        out = original(batch, progress)
        out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(method, "forward", poisoned)
    before = (tmp_path / "last.pt").read_bytes()
    with pytest.raises(FloatingPointError, match="epoch 1, step 0"):
        pretrain(method, data, cfg, tmp_path)
    assert (tmp_path / "last.pt").read_bytes() == before


def test_workers_do_not_change_the_result(tmp_path):
    results = []
    for workers in (0, 2):
        method, data, cfg = build(epochs=1)
        cfg = PretrainConfig(**{**cfg.__dict__, "num_workers": workers})
        pretrain(method, data, cfg, tmp_path / str(workers))
        results.append(_weights(tmp_path / str(workers) / "last.pt"))
    assert all(torch.equal(results[0][k], results[1][k]) for k in results[0])


def _with(cfg, **changes):
    return PretrainConfig(**{**cfg.__dict__, **changes})


def test_learning_rate_warms_up_then_holds_or_decays():
    cfg = PretrainConfig(lr=0.1, warmup_steps=4, schedule="constant")
    # linear warm-up lr * (step + 1) / warmup, then the constant rate whatever the epoch
    assert [learning_rate(cfg, 0, 10, s) for s in range(5)] == pytest.approx(
        [0.025, 0.05, 0.075, 0.1, 0.1]
    )
    assert learning_rate(cfg, 9, 10, 500) == pytest.approx(0.1)
    cosine = _with(cfg, schedule="cosine")
    assert learning_rate(cosine, 5, 10, 500) == pytest.approx(0.05)  # cosine_lr after warm-up


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"schedule": "linear"}, "schedule"),
        ({"warmup_steps": -1}, "warmup_steps"),
        ({"max_steps": 0}, "max_steps"),
        ({"max_steps": 5, "snapshot_steps": (0, -6)}, "snapshot_steps"),
    ],
)
def test_config_rejects_bad_schedules(changes, match):
    with pytest.raises(ValueError, match=match):
        PretrainConfig(**changes)


def test_max_steps_stop_inside_an_epoch_and_extend_to_the_same_weights(tmp_path):
    """A budget run stopped at 3 steps (inside the second epoch of 2 steps) and extended to
    5 equals a run of 5 steps, and its snapshots equal the longer run's: one run serves
    every budget of a study."""
    method, data, cfg = build(epochs=1)
    adamw = _with(cfg, optimizer="adamw", lr=1e-3, warmup_steps=2, schedule="constant")
    full = _with(adamw, max_steps=5, snapshot_steps=(0, 3, 5))
    pretrain(method, data, full, tmp_path / "full")
    staged = tmp_path / "staged"
    method, data, _ = build(epochs=1)
    pretrain(method, data, _with(full, max_steps=3), staged)
    state = torch.load(staged / "last.pt", weights_only=True)
    assert state["step"] == 3 and not snapshot_path(staged, 5).exists()
    method, data, _ = build(epochs=1)
    pretrain(method, data, full, staged)
    a, b = _weights(tmp_path / "full" / "last.pt"), _weights(staged / "last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    for step in (0, 3, 5):
        x = torch.load(snapshot_path(tmp_path / "full", step), weights_only=True)
        y = torch.load(snapshot_path(staged, step), weights_only=True)
        assert x["step"] == step and set(x["model"]) == set(y["model"])
        assert all(k.startswith("encoder.") for k in x["model"])
        assert all(torch.equal(x["model"][k], y["model"][k]) for k in x["model"])
    # step 0 is the initial encoder; 5 AdamW steps moved it
    first = torch.load(snapshot_path(staged, 0), weights_only=True)["model"]
    last = torch.load(snapshot_path(staged, 5), weights_only=True)["model"]
    assert any(not torch.equal(first[k], last[k]) for k in first)
    steps = [json.loads(x) for x in (staged / "log.jsonl").read_text().splitlines()]
    steps = [x for x in steps if x["kind"] == "step"]
    assert [(x["epoch"], x["step"]) for x in steps] == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0)]
    assert [x["lr"] for x in steps] == pytest.approx([5e-4, 1e-3, 1e-3, 1e-3, 1e-3])
