"""Whole-volume inference by patches (torchio's GridSampler / GridAggregator), for Dice on
whole volumes when the network was trained on crops (BraTS 112^3, LiTS 256x256x64)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torchio as tio
from torch import nn
from torch.utils.data import DataLoader

from pcrl_lib.perf import autocast_context, mixed_input


@torch.no_grad()
def predict_volume(
    model: nn.Module,
    volume: torch.Tensor,
    patch_size: Sequence[int],
    overlap: Sequence[int] | int = 0,
    batch_size: int = 2,
    dtype: str = "fp32",
    device: str = "cpu",
) -> torch.Tensor:
    """Sigmoid probabilities of a segmentation model over a whole volume.

    The volume is padded where needed, cut into a grid of ``patch_size`` patches that
    overlap by ``overlap`` voxels, predicted patch by patch, and the patches are put back
    with the overlaps averaged.

    Args:
        model: ``(B, C, *patch) -> (B, K, *patch)`` logits.
        volume: ``(C, X, Y, Z)``.
        patch_size: the network's input size.
        overlap: voxels shared by neighbouring patches (even numbers).

    Returns:
        ``(K, X, Y, Z)`` probabilities in [0, 1].
    """
    if volume.dim() != 4:
        raise ValueError(f"predict_volume expects (C, X, Y, Z), got {tuple(volume.shape)}")
    model.eval()
    shape = volume.shape[1:]
    short = [max(0, p - n) for p, n in zip(patch_size, shape, strict=True)]
    if any(short):  # a volume smaller than a patch: pad (edge values) at the far end
        pad = [v for s in reversed(short) for v in (0, s)]
        volume = F.pad(volume.float()[None], pad, mode="replicate")[0]
    subject = tio.Subject(image=tio.ScalarImage(tensor=volume.float()))
    sampler = tio.inference.GridSampler(subject, tuple(patch_size), overlap, padding_mode="edge")
    aggregator = tio.inference.GridAggregator(sampler, overlap_mode="average")
    for batch in DataLoader(sampler, batch_size=batch_size):
        x = mixed_input(batch["image"][tio.DATA], dtype, device)
        with autocast_context(dtype, torch.device(device).type):
            logits = model(x)
        aggregator.add_batch(torch.sigmoid(logits.float()).cpu(), batch[tio.LOCATION])
    out = aggregator.get_output_tensor()
    return out[:, : shape[0], : shape[1], : shape[2]]
