"""Preprocessing the paper states (Sec. 4.1, 4.3), written once and used by the real
datasets' readers and the synthetic ones alike.

- CT for pre-training and LUNA16: resample to 1 mm isotropic, HU window [-1000, 1000].
- LUNA16 fine-tuning: 48^3 crops around each candidate.
- LiTS: crop the slices around the liver plus a margin of 30 slices, HU window [-200, 200].
- BraTS: per-modality z-score over the brain voxels, cropped to the brain's bounding box.
- Chest X-rays: grey scale, resized, 8-bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

LUNA_WINDOW = (-1000.0, 1000.0)
LITS_WINDOW = (-200.0, 200.0)


def resample(
    volume: np.ndarray, spacing: Sequence[float], target: float = 1.0, order: int = 1
) -> np.ndarray:
    """Resample ``volume (X, Y, Z)`` from ``spacing`` mm to ``target`` mm isotropic.

    ``order`` 1 (trilinear) for images, 0 (nearest) for label maps. The output has
    ``round(n * spacing / target)`` voxels per axis.
    """
    if volume.ndim != 3 or len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(
            f"resample: need a 3D volume and 3 positive spacings, got {volume.shape}, {spacing}"
        )
    out_shape = [
        max(1, int(round(n * s / target))) for n, s in zip(volume.shape, spacing, strict=True)
    ]
    if order == 1:
        t = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None, None]
        return F.interpolate(t, size=out_shape, mode="trilinear", align_corners=False)[0, 0].numpy()
    zoom = [o / n for o, n in zip(out_shape, volume.shape, strict=True)]
    return ndimage.zoom(volume, zoom, order=0, mode="nearest", grid_mode=True)


def window_int16(hu: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Clip HU to ``window`` and store as int16 (rounded)."""
    return np.clip(np.rint(hu), *window).astype(np.int16)


def crop_centered(
    volume: np.ndarray, center: Sequence[float], size: int | Sequence[int], fill: float
) -> np.ndarray:
    """The ``size`` box of ``volume`` centred on voxel ``center``, padded with ``fill`` where
    it leaves the volume (candidates near the border keep their size)."""
    sizes = np.broadcast_to(np.asarray(size, dtype=int), (volume.ndim,))
    out = np.full(tuple(sizes), fill, dtype=volume.dtype)
    src, dst = [], []
    for c, n, s in zip(center, volume.shape, sizes, strict=True):
        lo = int(round(c)) - s // 2
        a, b = max(lo, 0), min(lo + s, n)
        if a >= b:
            raise ValueError(
                f"crop_centered: centre {tuple(center)} is outside the volume {volume.shape}"
            )
        src.append(slice(a, b))
        dst.append(slice(a - lo, b - lo))
    out[tuple(dst)] = volume[tuple(src)]
    return out


def liver_slab(mask: np.ndarray, margin: int = 30) -> slice:
    """The z-slices holding liver (label > 0) plus ``margin`` on both sides (LiTS, Sec. 4.1)."""
    zs = np.flatnonzero(mask.reshape(-1, mask.shape[-1]).any(axis=0))
    if zs.size == 0:
        raise ValueError("no liver voxels")
    return slice(max(int(zs[0]) - margin, 0), min(int(zs[-1]) + 1 + margin, mask.shape[-1]))


def normalise_brain(image: np.ndarray) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Per-modality z-score over brain voxels (non-zero in any modality), zero outside, cropped
    to the brain's bounding box.

    Args:
        image: ``(C, X, Y, Z)`` raw MRI intensities.

    Returns:
        ``(C, x, y, z)`` float32 and the crop's slices in the input's spatial grid.
    """
    brain = (image != 0).any(axis=0)
    if not brain.any():
        raise ValueError("the image is zero everywhere")
    out = np.zeros_like(image, dtype=np.float32)
    for c in range(image.shape[0]):
        v = image[c][brain].astype(np.float64)
        out[c][brain] = (v - v.mean()) / (v.std() + 1e-8)
    box = ndimage.find_objects(brain.astype(np.uint8))[0]
    return out[(slice(None), *box)], box


def xray_uint8(image: np.ndarray, size: int) -> np.ndarray:
    """A 2D grey-scale image (any range) resized to ``size x size`` and scaled to uint8."""
    if image.ndim != 2:
        raise ValueError(f"expected a 2D grey image, got shape {image.shape}")
    img = image.astype(np.float32)
    lo, hi = float(img.min()), float(img.max())
    img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    t = torch.from_numpy(img)[None, None]
    t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return np.clip(np.rint(t[0, 0].numpy() * 255), 0, 255).astype(np.uint8)
