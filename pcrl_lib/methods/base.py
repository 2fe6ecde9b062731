"""The one interface every self-supervised method implements.

A method is an ``nn.Module`` whose ``forward(batch, progress)`` turns a batch of views into a
dict of named scalar tensors with a ``"loss"`` entry to minimise, and which exposes the
``encoder`` that downstream tasks fine-tune. ``progress`` in ``[0, 1]`` is the fraction of
pre-training done (for schedules inside a loss, e.g. the official PCRLv2 code's cosine
weight); the engine passes it.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class SSLMethod(Protocol):
    """What the pre-training engine needs from a method."""

    encoder: nn.Module

    def __call__(
        self, batch: dict[str, torch.Tensor], progress: float = 0.0
    ) -> dict[str, torch.Tensor]: ...


def require_keys(batch: dict, keys: tuple[str, ...], method: str) -> None:
    """Raise ``KeyError`` naming the method and the missing batch keys."""
    missing = [k for k in keys if k not in batch]
    if missing:
        raise KeyError(f"{method}: batch lacks {missing}; it has {sorted(batch)}")
