"""DDP through torchrun on the CPU (gloo, 2 processes)."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pcrl_lib.engine.pretrain import PretrainConfig, pretrain
from tests.engine.tiny_run import build

SCRIPT = Path(__file__).with_name("ddp_run.py")


def _torchrun(out, method, n_images=11):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(SCRIPT),
        str(out),
        method,
        str(n_images),
    ]
    subprocess.run(cmd, check=True, capture_output=True, text=True)


def _params(state):
    return {k: v for k, v in state.items() if "running" not in k and "num_batches" not in k}


def _moved(before, after):
    return any(not torch.equal(before[k], after[k]) for k in before)


# 11 images, a global batch of 4 over 2 processes: two global batches per epoch, uneven
# shards (5 per process after the sampler drops one, one more dropped as a batch of one)


@pytest.mark.slow
def test_pcrlv2_replicas_stay_identical_and_move(tmp_path):
    _torchrun(tmp_path, "pcrlv2")
    a = _params(torch.load(tmp_path / "rank0.pt", weights_only=True))
    b = _params(torch.load(tmp_path / "rank1.pt", weights_only=True))
    assert all(torch.equal(a[k], b[k]) for k in a)  # both ranks, compared with each other
    # ... while each saw its own shard: batch-norm statistics are per process
    full_a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    full_b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    stats = [k for k in full_a if "running_mean" in k]
    assert stats and any(not torch.equal(full_a[k], full_b[k]) for k in stats)
    assert _moved(_params(torch.load(tmp_path / "initial0.pt", weights_only=True)), a)
    assert (tmp_path / "last.pt").exists()  # written by process 0
    steps = [x for x in (tmp_path / "log.jsonl").read_text().splitlines() if '"step"' in x]
    assert len(steps) == 4  # 2 epochs x 2 global batches


@pytest.mark.slow
def test_ddp_matches_one_process_with_the_same_global_batches(tmp_path):
    # Without batch norm, 2 processes x 2 samples must equal 1 process x 4 samples, batch
    # for batch; the tolerance covers float summation order. (With batch norm the
    # statistics are per process, so PCRLv2 is compared replica to replica above.)
    _torchrun(tmp_path / "ddp", "restorer")
    method, data, cfg = build(epochs=2, method="restorer", n_images=11)
    initial = {k: v.clone() for k, v in method.state_dict().items()}
    pretrain(method, data, PretrainConfig(**{**cfg.__dict__, "batch_size": 4}), tmp_path / "one")
    assert _moved(initial, method.state_dict())
    for rank in (0, 1):
        ddp = torch.load(tmp_path / "ddp" / f"rank{rank}.pt", weights_only=True)
        for k, v in method.state_dict().items():
            assert torch.allclose(ddp[k], v, rtol=1e-5, atol=1e-6), (rank, k)
