"""Random fields shared by the synthetic generators (2D and 3D written once).

Everything is deterministic given a :class:`numpy.random.Generator`; the generators derive
one from ``(seed, index)`` with :func:`case_rng` so that sample ``i`` of a dataset never
depends on which other samples were drawn before it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage


def case_rng(seed: int, index: int, stream: int = 0) -> np.random.Generator:
    """The generator of sample ``index`` of a dataset with ``seed`` (independent streams)."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be non-negative, got seed={seed}, index={index}")
    return np.random.default_rng([seed, index, stream])


def smooth_noise(
    rng: np.random.Generator, shape: Sequence[int], cell: float | Sequence[float]
) -> np.ndarray:
    """A smooth zero-mean, unit-std random field of ``shape`` (2D or 3D), float32.

    White noise on a coarse grid with two nodes every ``cell`` voxels (per axis), blurred
    there with a unit Gaussian and upsampled (bi/trilinear): features are about ``cell``
    voxels wide. All the work but the final interpolation happens on the coarse grid, so
    the cost is a few operations per output voxel.
    """
    cells = np.broadcast_to(np.asarray(cell, dtype=float), (len(shape),))
    if np.any(cells <= 0) or len(shape) not in (2, 3):
        raise ValueError(f"smooth_noise: 2D/3D shape and positive cell needed, got {shape}, {cell}")
    coarse_shape = [max(4, int(np.ceil(2 * n / c)) + 1) for n, c in zip(shape, cells, strict=True)]
    coarse = ndimage.gaussian_filter(rng.standard_normal(coarse_shape).astype(np.float32), 1.0)
    mode = "bilinear" if len(shape) == 2 else "trilinear"
    field = F.interpolate(
        torch.from_numpy(coarse)[None, None], size=tuple(shape), mode=mode, align_corners=True
    )[0, 0].numpy()
    std = float(field.std())
    return ((field - field.mean()) / (std if std > 0 else 1.0)).astype(np.float32)


def grid_mm(shape: Sequence[int], spacing: Sequence[float]) -> list[np.ndarray]:
    """Open (broadcastable) coordinate grids in mm, centred on the volume, one per axis."""
    axes = []
    for ax, (n, s) in enumerate(zip(shape, spacing, strict=True)):
        view = [1] * len(shape)
        view[ax] = n
        axes.append(((np.arange(n, dtype=np.float32) - (n - 1) / 2) * s).reshape(view))
    return axes


def ellipsoid(
    coords: Sequence[np.ndarray], center: Sequence[float], radii: Sequence[float]
) -> np.ndarray:
    """Normalised elliptic radius ``sqrt(sum(((x - c) / r)^2))``: < 1 inside, broadcast shape."""
    total = 0.0
    for x, c, r in zip(coords, center, radii, strict=True):
        total = total + ((x - c) / r) ** 2
    return np.sqrt(total)


def soft_step(signed: np.ndarray, width: float) -> np.ndarray:
    """A smooth 0 -> 1 step of ``width`` around 0 (partial-volume edges), float32."""
    return (0.5 * (1 + np.tanh(signed / max(width, 1e-6)))).astype(np.float32)
