"""How far training moved a network's weights: the relative change of each kernel.

A pre-training run that leaves the encoder where its initialisation put it cannot help the
downstream task, whatever its loss curve shows. The relative change
``||W_after - W_before|| / ||W_before||`` of each convolution and linear kernel, layer by
layer from the input, says how much of the encoder a run trained. At the small profiles'
budgets it is often little beyond the first layers (see the README's Benchmarks).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn


def kernel_weights(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached fp32 copy of every kernel of ``module`` - the weights of two or more
    dimensions (convolutions ``(C_out, C_in, *k)``, linear layers ``(out, in)``) - by name,
    in registration order (for an encoder: from the input to the deepest layer). Biases and
    batch-norm parameters are left out."""
    return {
        name: p.detach().float().clone() for name, p in module.named_parameters() if p.dim() >= 2
    }


def weight_drift(
    before: Mapping[str, torch.Tensor], after: Mapping[str, torch.Tensor]
) -> dict[str, float]:
    """``||after[k] - before[k]||_F / ||before[k]||_F`` for every kernel ``k`` of ``before``,
    in its order (0: unchanged; 1: moved by as much as its initial size).

    Raises:
        ValueError: a kernel of ``before`` is missing from ``after``, has another shape, or
            is all zeros (its relative change is undefined).
    """
    out = {}
    for name, w0 in before.items():
        if name not in after:
            raise ValueError(f"weight_drift: kernel {name!r} is missing from the trained weights")
        w1 = after[name].float()
        if w1.shape != w0.shape:
            raise ValueError(
                f"weight_drift: kernel {name!r} changed shape {tuple(w0.shape)} -> {tuple(w1.shape)}"
            )
        norm = float(w0.float().norm())
        if norm == 0.0:
            raise ValueError(f"weight_drift: kernel {name!r} starts at zero; no relative change")
        out[name] = float((w1 - w0.float()).norm()) / norm
    return out


def summarize_drift(drift: Mapping[str, float]) -> dict[str, float]:
    """The relative changes of :func:`weight_drift` in four numbers: the ``first`` kernel's
    (the input layer), the ``median`` and ``mean`` over kernels, and the ``last`` kernel's
    (the deepest layer)."""
    if not drift:
        raise ValueError("summarize_drift: no kernels")
    values = np.asarray(list(drift.values()), dtype=float)
    return {
        "first": float(values[0]),
        "median": float(np.median(values)),
        "mean": float(values.mean()),
        "last": float(values[-1]),
    }
