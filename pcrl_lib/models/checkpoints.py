"""Loading the official PCRLv2 checkpoints (and torchvision-style ResNet-18 weights).

The authors released ``.pt`` files whose ``torch.load(path)["state_dict"]`` holds either a
ResNet-18 encoder in torchvision's naming (2D: NIH ChestX-ray, CheXpert) or the whole 3D
model ``PCRLv23d`` (LUNA), keys possibly prefixed ``module.`` (DataParallel). Their layout is
listed in ``shared/formats`` of this project; the 3D names map onto ours as follows:

==============================================  ============================================
official (RL4M/PCRLv2 ``pcrlv2_model_3d.py``)   this library (``PCRLv2.net`` = ``NSUNet``)
==============================================  ============================================
``down_tr{64,128,256,512}.ops.{i}.conv1``       ``encoder.stages.{0..3}.{i}.conv``
``down_tr*.ops.{i}.bn1``                        ``encoder.stages.*.{i}.bn``
``up_tr{256,128,64}.up_conv``                   ``blocks.{0,1,2}.up.conv``
``up_tr*.ops.{i}.conv1`` / ``bn1``              ``blocks.*.conv{i+1}.conv`` / ``.bn``
``up_tr{256,128,64}.bn``                        ``comparison_heads.{4,2,1}.bn`` (Eq. 5)
``up_tr*.predictor_head.{0,1,3}``               ``predictors.{4,2,1}.{fc1,bn,fc2}`` (Eq. 6)
``up_tr*.deep_supervision_head.{conv1,bn1}``    ``restoration_heads.{4,2,1}.{conv,bn}``
                                                (``restore_head="light"``)
``out_tr.final_conv``                           ``final_head`` (official preset)
==============================================  ============================================
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

_STAGES_3D = {"down_tr64": 0, "down_tr128": 1, "down_tr256": 2, "down_tr512": 3}
_UP_3D = {"up_tr256": (0, 4), "up_tr128": (1, 2), "up_tr64": (2, 1)}
_PRED = {"0": "fc1", "1": "bn", "3": "fc2"}


@dataclass
class LoadReport:
    """What a load did: keys loaded, target keys left as they were, source keys not used."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)


def read_state_dict(source: str | os.PathLike | dict) -> dict[str, torch.Tensor]:
    """The state_dict in a checkpoint file or dict, ``module.`` prefixes removed.

    Accepts ``{"state_dict": ...}`` (the official files), ``{"model": ...}`` or a bare
    state_dict. Files are read with ``weights_only=True`` (the official files pickle an
    ``argparse.Namespace``, which is allowed explicitly).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a checkpoint, or holds no tensors.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        try:
            with torch.serialization.safe_globals([argparse.Namespace]):
                obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise ValueError(f"{path}: not a readable PyTorch checkpoint ({err})") from err
        where = str(path)
    else:
        obj, where = source, "checkpoint dict"
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{where}: holds no state_dict of tensors")
    return {re.sub(r"^(module\.)+", "", k): v for k, v in obj.items()}


def official_3d_key(key: str) -> str | None:
    """Our ``NSUNet``/``PCRLv2`` key for an official 3D key (``None``: not loaded)."""
    parts = key.split(".")
    head = parts[0]
    if head in _STAGES_3D and parts[1] == "ops":
        layer = {"conv1": "conv", "bn1": "bn"}[parts[3]]
        return f"net.encoder.stages.{_STAGES_3D[head]}.{parts[2]}.{layer}.{parts[-1]}"
    if head in _UP_3D:
        block, rate = _UP_3D[head]
        if parts[1] == "up_conv":
            return f"net.blocks.{block}.up.conv.{parts[-1]}"
        if parts[1] == "ops":
            layer = {"conv1": "conv", "bn1": "bn"}[parts[3]]
            return f"net.blocks.{block}.conv{int(parts[2]) + 1}.{layer}.{parts[-1]}"
        if parts[1] == "bn":
            return f"comparison_heads.{rate}.bn.{parts[-1]}"
        if parts[1] == "predictor_head":
            return f"predictors.{rate}.{_PRED[parts[2]]}.{parts[-1]}"
        if parts[1] == "deep_supervision_head":
            layer = {"conv1": "conv", "bn1": "bn"}[parts[2]]
            return f"restoration_heads.{rate}.{layer}.{parts[-1]}"
        return None
    if head == "out_tr":
        return f"final_head.{parts[-1]}"
    return None


def is_official_3d(state: dict) -> bool:
    """Whether a state_dict has the official 3D layout."""
    return any(k.startswith("down_tr64.") for k in state)


def _inflate_input_channels(weight: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A first-layer kernel pre-trained on 1 channel (CT) used on ``C`` channels (BraTS's four
    modalities): repeated over the channels and divided by ``C``, so a picture repeated in
    every channel gives the pre-trained response (I3D-style inflation over channels)."""
    if (
        weight.dim() >= 3
        and weight.shape[1] == 1
        and like.shape[1] > 1
        and weight.shape[2:] == like.shape[2:]
        and weight.shape[0] == like.shape[0]
    ):
        return weight.repeat(1, like.shape[1], *([1] * (weight.dim() - 2))) / like.shape[1]
    return weight


def _load(
    target: nn.Module, state: dict[str, torch.Tensor], required: str, where: str
) -> LoadReport:
    """Copy ``state`` into ``target`` by name; every key of ``target`` starting with
    ``required`` must be present with the right shape."""
    own = target.state_dict()
    report = LoadReport()
    state = {k: _inflate_input_channels(v, own[k]) if k in own else v for k, v in state.items()}
    bad_shape = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and own[k].shape != v.shape
    ]
    if bad_shape:
        raise ValueError(f"{where}: shape mismatch for {len(bad_shape)} tensors: {bad_shape[:5]}")
    missing_required = [k for k in own if k.startswith(required) and k not in state]
    if missing_required:
        raise ValueError(
            f"{where}: {len(missing_required)} encoder tensors missing from the checkpoint, "
            f"e.g. {missing_required[:5]}; is it for this architecture (2D/3D, depth, width)?"
        )
    usable = {k: v for k, v in state.items() if k in own}
    target.load_state_dict(usable, strict=False)
    report.loaded = sorted(usable)
    report.missing = sorted(k for k in own if k not in usable)
    report.unused = sorted(k for k in state if k not in own)
    return report


def load_official_pcrlv2(model: nn.Module, source: str | os.PathLike | dict) -> LoadReport:
    """Load an official PCRLv2 checkpoint into a :class:`pcrl_lib.methods.PCRLv2`.

    3D: the full model (encoder, decoder, comparison heads, predictors, output head; the
    model must be built with ``pcrlv2_config("official", 3)``: depth 3, width 1). 2D: the
    encoder. Every encoder tensor must arrive; the report lists what else did and did not.
    """
    state = read_state_dict(source)
    where = str(source) if not isinstance(source, dict) else "checkpoint dict"
    if is_official_3d(state):
        mapped, unused = {}, []
        for k, v in state.items():
            new = official_3d_key(k)
            (unused.append(k) if new is None else mapped.__setitem__(new, v))
        report = _load(model, mapped, "net.encoder.", where)
        report.unused = sorted(set(report.unused) | set(unused))
        return report
    return _load(model, {f"net.encoder.{k}": v for k, v in state.items()}, "net.encoder.", where)


def load_encoder(encoder: nn.Module, source: str | os.PathLike | dict) -> LoadReport:
    """Load encoder weights from any supported checkpoint into a bare encoder.

    Supported: the official 2D (torchvision-named ResNet-18) and 3D files, torchvision's
    ResNet-18 weights (``fc`` is ignored), and this library's checkpoints (keys under
    ``encoder.`` or ``net.encoder.``). Every encoder tensor must be present.
    """
    state = read_state_dict(source)
    where = str(source) if not isinstance(source, dict) else "checkpoint dict"
    if is_official_3d(state):
        state = {official_3d_key(k): v for k, v in state.items()}
        state = {k: v for k, v in state.items() if k is not None}
    for prefix in ("net.encoder.", "encoder."):
        if any(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            break
    return _load(encoder, state, "", where)
