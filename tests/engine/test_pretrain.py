import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pcrl_lib.engine.common import cosine_lr
from pcrl_lib.engine.pretrain import PretrainConfig, pretrain, sample_seed
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
    full, killed = tmp_path / "full", tmp_path / "killed"
    subprocess.run([sys.executable, str(SCRIPT), str(full), "6"], check=True)
    proc = subprocess.Popen([sys.executable, str(SCRIPT), str(killed), "6"])
    log = killed / "log.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:  # kill after the second epoch's checkpoint
        if log.exists() and sum('"kind": "epoch"' in x for x in log.read_text().splitlines()) >= 2:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sum('"kind": "epoch"' in x for x in log.read_text().splitlines())
    assert 2 <= done < 6
    subprocess.run([sys.executable, str(SCRIPT), str(killed), "6"], check=True)
    a, b = _weights(full / "last.pt"), _weights(killed / "last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


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
