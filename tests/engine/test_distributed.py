"""DDP through torchrun on the CPU (gloo, 2 processes)."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pcrl_lib.engine.pretrain import PretrainConfig, pretrain
from tests.engine.tiny_run import build

SCRIPT = Path(__file__).with_name("ddp_run.py")


def _torchrun(out, method):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(SCRIPT),
        str(out),
        method,
    ]
    subprocess.run(cmd, check=True, capture_output=True, text=True)


def _params(state):
    return {k: v for k, v in state.items() if "running" not in k and "num_batches" not in k}


@pytest.mark.slow
def test_pcrlv2_replicas_stay_identical(tmp_path):
    _torchrun(tmp_path, "pcrlv2")
    a = _params(torch.load(tmp_path / "rank0.pt", weights_only=True))
    b = _params(torch.load(tmp_path / "rank1.pt", weights_only=True))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "last.pt").exists()  # written by process 0


@pytest.mark.slow
def test_ddp_matches_one_process_with_the_same_global_batch(tmp_path):
    # Without batch norm, 2 processes x 2 samples must equal 1 process x 4 samples; the
    # tolerance covers float summation order. (With batch norm the statistics are per
    # process, so PCRLv2 is compared replica to replica above.)
    _torchrun(tmp_path / "ddp", "restorer")
    method, data, cfg = build(epochs=2, method="restorer")
    pretrain(method, data, PretrainConfig(**{**cfg.__dict__, "batch_size": 4}), tmp_path / "one")
    ddp = torch.load(tmp_path / "ddp" / "rank0.pt", weights_only=True)
    for k, v in method.state_dict().items():
        assert torch.allclose(ddp[k], v, rtol=1e-5, atol=1e-6), k
