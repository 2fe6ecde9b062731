"""run_pretrain's encoder initialisation (``PretrainSettings.encoder_init``): the encoder
starts from the named weights - ImageNet's ResNet-18 in 2D, as the official 2D code does."""

import numpy as np
import pytest
import torch
import torchvision

from pcrl_lib.data.prepared import PreparedWriter
from pcrl_lib.engine import experiment
from pcrl_lib.engine.experiment import encoder_init_file, run_pretrain
from pcrl_lib.profiles import PretrainSettings

VIEWS_2D = {"global_out": (32, 32), "local_out": (16, 16)}


@pytest.fixture(scope="module")
def xrays(tmp_path_factory):
    root = tmp_path_factory.mktemp("xrays")
    rng = np.random.default_rng(0)
    w = PreparedWriter(root, "toy2", "test", {})
    for i in range(4):
        w.add(f"c{i}", f"p{i}", image=rng.integers(0, 255, (1, 40, 40)).astype(np.uint8))
    return w.finish({"train": [f"c{i}" for i in range(4)]})


@pytest.fixture(scope="module")
def resnet_file(tmp_path_factory):
    """A torchvision ResNet-18 state dict as torchvision saves its ImageNet file (with fc)."""
    torch.manual_seed(123)
    path = tmp_path_factory.mktemp("weights") / "resnet18-f37072fd.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


@pytest.fixture
def captured(monkeypatch):
    """Replace the training loop: keep the model run_pretrain built and return at once."""
    seen = {}

    def fake_pretrain(model, dataset, cfg, out_dir):
        seen["model"] = model
        return {"epochs_run": 0}

    monkeypatch.setattr(experiment, "pretrain", fake_pretrain)
    return seen


def _encoder_equals(encoder, path) -> bool:
    want = torch.load(path, weights_only=True)
    have = encoder.state_dict()
    shared = [k for k in have if k in want]
    assert len(shared) > 100  # every conv / bn tensor of ResNet-18
    return all(torch.equal(have[k], want[k]) for k in shared)


@pytest.mark.parametrize("method", ["PCRLv2", "SimSiam"])
def test_encoder_starts_from_the_file(xrays, resnet_file, captured, tmp_path, method):
    settings = PretrainSettings(1, 2, views=VIEWS_2D, encoder_init=str(resnet_file))
    summary = run_pretrain(xrays, settings, tmp_path, method=method, progress_bar=False)
    assert _encoder_equals(captured["model"].encoder, resnet_file)
    assert summary["encoder_init"] == str(resnet_file)


def test_random_initialisation_by_default(xrays, resnet_file, captured, tmp_path):
    summary = run_pretrain(xrays, PretrainSettings(1, 2, views=VIEWS_2D), tmp_path)
    assert not _encoder_equals(captured["model"].encoder, resnet_file)
    assert summary["encoder_init"] is None


def test_imagenet_is_read_from_pcrl_imagenet_weights(
    xrays, resnet_file, captured, tmp_path, monkeypatch
):
    monkeypatch.setenv("PCRL_IMAGENET_WEIGHTS", str(resnet_file))
    settings = PretrainSettings(1, 2, views=VIEWS_2D, encoder_init="imagenet")
    summary = run_pretrain(xrays, settings, tmp_path, progress_bar=False)
    assert _encoder_equals(captured["model"].encoder, resnet_file)
    assert summary["encoder_init"] == str(resnet_file)


def test_imagenet_absent_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv("PCRL_IMAGENET_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(FileNotFoundError, match="PCRL_IMAGENET_WEIGHTS"):
        encoder_init_file("imagenet")


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.pt"):
        encoder_init_file(tmp_path / "nothere.pt")


def test_weights_of_another_architecture_are_refused(xrays, tmp_path, captured):
    wrong = tmp_path / "small.pt"
    torch.save({"conv1.weight": torch.zeros(8, 3, 3, 3)}, wrong)
    settings = PretrainSettings(1, 2, views=VIEWS_2D, encoder_init=str(wrong))
    with pytest.raises(ValueError, match="small.pt"):
        run_pretrain(xrays, settings, tmp_path / "run", progress_bar=False)
    assert "model" not in captured  # refused before any training
