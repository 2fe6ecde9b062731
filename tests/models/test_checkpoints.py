"""Loading the official PCRLv2 checkpoints, tested on state_dicts with exactly the released
keys and shapes (tests/data/official_*_keys.json, copied from the checkpoint layout notes)."""

import argparse
import json
from pathlib import Path

import pytest
import torch

from pcrl_lib.methods import PCRLv2, pcrlv2_config
from pcrl_lib.models import NSUNet, ResNet18Encoder, UNetEncoder3D
from pcrl_lib.models.checkpoints import (
    load_encoder,
    load_official_pcrlv2,
    official_3d_key,
    read_state_dict,
)

DATA = Path(__file__).resolve().parents[1] / "data"


def _official(name: str) -> dict[str, torch.Tensor]:
    spec = json.loads((DATA / name).read_text())
    gen = torch.Generator().manual_seed(0)
    state = {
        k: torch.randint(0, 100, (), generator=gen)
        if k.endswith("num_batches_tracked")
        else torch.randn(*shape, generator=gen)
        for k, shape in spec["params"].items()
    }
    assert len(state) == spec["n_tensors"]
    return state


def _save(tmp_path, state, prefix):
    path = tmp_path / "official.pt"
    torch.save(
        {
            "opt": argparse.Namespace(lr=0.01),
            "state_dict": {prefix + k: v for k, v in state.items()},
            "epoch": 240,
        },
        path,
    )
    return path


@pytest.mark.parametrize("prefix", ["", "module."])
def test_official_3d_full_model_loads_every_tensor(tmp_path, prefix):
    state = _official("official_3d_state_dict_keys.json")
    model = PCRLv2(pcrlv2_config("official", 3))
    report = load_official_pcrlv2(model, _save(tmp_path, state, prefix))
    assert len(report.loaded) == 169 and report.missing == [] and report.unused == []
    ours = model.state_dict()
    for key, value in state.items():
        assert torch.equal(ours[official_3d_key(key)], value), key


@pytest.mark.parametrize("prefix", ["", "module."])
def test_official_3d_encoder_into_bare_encoder(tmp_path, prefix):
    state = _official("official_3d_state_dict_keys.json")
    enc = UNetEncoder3D(3, 1, depth=3)
    report = load_encoder(enc, _save(tmp_path, state, prefix))
    assert report.missing == []
    enc_keys = [k for k in state if k.startswith("down_tr")]
    assert len(report.loaded) == len(enc_keys) == 56
    for key in enc_keys:
        assert torch.equal(
            enc.state_dict()[official_3d_key(key)[len("net.encoder.") :]], state[key]
        )


@pytest.mark.parametrize("prefix", ["", "module."])
def test_official_2d_encoder_loads_into_resnet18(tmp_path, prefix):
    state = _official("official_2d_encoder_state_dict_keys.json")
    enc = ResNet18Encoder()
    report = load_encoder(enc, _save(tmp_path, state, prefix))
    assert len(report.loaded) == 120 and report.missing == [] and report.unused == []
    for key, value in state.items():
        assert torch.equal(enc.state_dict()[key], value)
    model = PCRLv2(pcrlv2_config("official", 2))
    report = load_official_pcrlv2(model, _save(tmp_path, state, prefix))
    assert len(report.loaded) == 120 and all(k.startswith("net.encoder.") for k in report.loaded)


def test_own_checkpoint_roundtrip_into_encoder(tmp_path):
    net = NSUNet(3, 1, depth=3, width=0.25)
    path = tmp_path / "ours.pt"
    torch.save({"model": net.state_dict()}, path)
    enc = UNetEncoder3D(3, 1, depth=3, width=0.25)
    load_encoder(enc, path)
    for k, v in net.encoder.state_dict().items():
        assert torch.equal(enc.state_dict()[k], v)


def test_wrong_architecture_is_named(tmp_path):
    state = _official("official_3d_state_dict_keys.json")
    path = _save(tmp_path, state, "")
    with pytest.raises(ValueError, match="shape mismatch"):
        load_encoder(UNetEncoder3D(3, 1, depth=3, width=0.5), path)
    with pytest.raises(ValueError, match="missing from the checkpoint"):
        load_encoder(UNetEncoder3D(3, 1, depth=5), path)


def test_bad_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        read_state_dict(tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt"):
        read_state_dict(junk)
    empty = tmp_path / "empty.pt"
    torch.save({"epoch": 3}, empty)
    with pytest.raises(ValueError, match="no state_dict"):
        read_state_dict(empty)


def test_one_channel_encoder_loads_into_four_channel_model():
    """CT pre-training (1 channel) -> BraTS (4 modalities): the first kernel is repeated
    over the channels and divided by 4, so a grey image in every channel gives the same
    first-layer response."""
    import torch

    from pcrl_lib.models.checkpoints import load_encoder
    from pcrl_lib.models.encoders import build_encoder

    one = build_encoder(3, 1, depth=3, width=0.125)
    four = build_encoder(3, 4, depth=3, width=0.125)
    load_encoder(four, {f"encoder.{k}": v for k, v in one.state_dict().items()})
    first = [k for k, v in one.state_dict().items() if v.dim() == 5][0]
    w1, w4 = one.state_dict()[first], four.state_dict()[first]
    assert w4.shape[1] == 4
    torch.testing.assert_close(w4.sum(dim=1, keepdim=True), w1)
