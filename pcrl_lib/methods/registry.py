"""Every pre-training method of the paper's tables by its table key, with the inputs it
trains on. ``TS`` (random initialisation) and ``IN`` (ImageNet weights,
:func:`pcrl_lib.methods.imagenet.imagenet_resnet18`) have no pre-training.

=========  ==========================================  =====  =================================
key        method                                      dims   inputs
=========  ==========================================  =====  =================================
PCRLv2     :class:`pcrl_lib.methods.PCRLv2`            2, 3   the PCRLv2 view generator
SimSiam    :class:`~pcrl_lib.methods.simsiam.SimSiam`  2, 3   two global views
BYOL       :class:`~pcrl_lib.methods.byol.BYOL`        2, 3   two global views
PGL        :class:`~pcrl_lib.methods.pgl.PGL`          2, 3   :class:`~.inputs.PGLInputs`
DrasCLR    :class:`~.drasclr.DrasCLR`                  3      :class:`~.inputs.DrasCLRInputs`
C2L        :class:`~pcrl_lib.methods.contrastive.C2L`  2, 3   two global views
PCRLv1     :class:`~.contrastive.PCRLv1`               2, 3   :class:`~.inputs.PCRLv1Inputs`
MG         :class:`~.restorers.ModelsGenesis`          2, 3   :class:`~.inputs.GenesisInputs`
TransVW    :class:`~.restorers.TransVW`                2, 3   :class:`~.inputs.VisualWordInputs`
Cube++     :class:`~.restorers.RubikCubePP`            3      :class:`~.inputs.RubikInputs`
3D-CPC     :class:`~.cpc.CPC3D`                        3      one global view
=========  ==========================================  =====  =================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from pcrl_lib.methods.byol import BYOL
from pcrl_lib.methods.contrastive import C2L, PCRLv1
from pcrl_lib.methods.cpc import CPC3D
from pcrl_lib.methods.drasclr import DrasCLR
from pcrl_lib.methods.inputs import (
    DrasCLRInputs,
    GenesisInputs,
    PCRLv1Inputs,
    PGLInputs,
    RubikInputs,
)
from pcrl_lib.methods.pcrlv2 import PCRLv2, pcrlv2_config
from pcrl_lib.methods.pgl import PGL
from pcrl_lib.methods.restorers import ModelsGenesis, RubikCubePP, TransVW
from pcrl_lib.methods.simsiam import SimSiam
from pcrl_lib.pipeline import ViewGenerator

NO_PRETRAINING = ("TS", "IN")


@dataclass(frozen=True)
class MethodSpec:
    """How to build a method (``build(dims, in_channels, depth, width, **kw)``) and its
    inputs (``inputs(base)`` wraps PCRLv2's view generator ``base``)."""

    key: str
    dims: tuple[int, ...]
    build: Callable[..., nn.Module]
    inputs: Callable[[ViewGenerator], Callable] = lambda base: base


METHODS: dict[str, MethodSpec] = {
    "PCRLv2": MethodSpec(
        "PCRLv2",
        (2, 3),
        lambda d, c, depth, width, **kw: PCRLv2(
            pcrlv2_config(
                kw.pop("preset", "paper"), d, in_channels=c, depth=depth, width=width, **kw
            )
        ),
    ),
    "SimSiam": MethodSpec(
        "SimSiam", (2, 3), lambda d, c, depth, width, **kw: SimSiam(d, c, depth, width, **kw)
    ),
    "BYOL": MethodSpec(
        "BYOL", (2, 3), lambda d, c, depth, width, **kw: BYOL(d, c, depth, width, **kw)
    ),
    "PGL": MethodSpec(
        "PGL",
        (2, 3),
        lambda d, c, depth, width, **kw: PGL(d, c, depth, width, **kw),
        lambda b: PGLInputs(b),
    ),
    "DrasCLR": MethodSpec(
        "DrasCLR",
        (3,),
        lambda d, c, depth, width, **kw: DrasCLR(d, c, depth, width, **kw),
        lambda b: DrasCLRInputs(b),
    ),
    "C2L": MethodSpec(
        "C2L", (2, 3), lambda d, c, depth, width, **kw: C2L(d, c, depth, width, **kw)
    ),
    "PCRLv1": MethodSpec(
        "PCRLv1",
        (2, 3),
        lambda d, c, depth, width, **kw: PCRLv1(d, c, depth, width, **kw),
        lambda b: PCRLv1Inputs(b),
    ),
    "MG": MethodSpec(
        "MG",
        (2, 3),
        lambda d, c, depth, width, **kw: ModelsGenesis(d, c, depth, width),
        lambda b: GenesisInputs(b),
    ),
    "TransVW": MethodSpec(
        "TransVW",
        (2, 3),
        lambda d, c, depth, width, **kw: TransVW(d, c, depth=depth, width=width, **kw),
    ),
    "Cube++": MethodSpec(
        "Cube++",
        (3,),
        lambda d, c, depth, width, **kw: RubikCubePP(d, c, depth, width),
        lambda b: RubikInputs(b),
    ),
    "3D-CPC": MethodSpec(
        "3D-CPC", (3,), lambda d, c, depth, width, **kw: CPC3D(c, depth, width, **kw)
    ),
}


def get_method(key: str, spatial_dims: int) -> MethodSpec:
    """The method ``key`` for ``spatial_dims``; clear errors for unknown keys, for ``TS`` /
    ``IN`` (nothing to pre-train) and for 3D-only methods asked in 2D."""
    if key in NO_PRETRAINING:
        raise ValueError(
            f"{key} has no pre-training: fine-tune without a checkpoint (TS) or with ImageNet weights (IN)"
        )
    if key not in METHODS:
        raise ValueError(f"unknown method {key!r}; choose one of {', '.join(METHODS)}")
    spec = METHODS[key]
    if spatial_dims not in spec.dims:
        raise ValueError(f"{key} is defined for {spec.dims}D only, not {spatial_dims}D")
    return spec
