"""A minimal chest-CT phantom in Hounsfield units, for demos, tests and benchmarks.

Deterministic by ``seed``; no files, no downloads. It has the structure the PCRLv2 view
pipeline reacts to - air around an elliptic body, two lungs, a spine and a few nodules - but
none of the statistics a downstream task needs (that is the job of the synthetic datasets).
"""

from __future__ import annotations

import numpy as np


def phantom_ct(shape: tuple[int, int, int] = (160, 160, 120), seed: int = 0) -> np.ndarray:
    """A CT-like volume ``(1, X, Y, Z)`` in HU (float32, 1 mm voxels).

    Air -1000, soft tissue ~40, lungs ~-850, bone ~700, nodules ~0, Gaussian noise 20 HU.
    """
    if len(shape) != 3 or min(shape) < 8:
        raise ValueError(f"phantom_ct needs a 3D shape of at least 8 per axis, got {shape}")
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, n, dtype=np.float32) for n in shape], indexing="ij")
    vol = np.full(shape, -1000.0, dtype=np.float32)
    vol[(x / 0.85) ** 2 + (y / 0.65) ** 2 < 1] = 40.0
    for cx in (-0.4, 0.4):
        vol[((x - cx) / 0.3) ** 2 + (y / 0.45) ** 2 + (z / 0.9) ** 2 < 1] = -850.0
    vol[(x / 0.08) ** 2 + ((y + 0.5) / 0.08) ** 2 < 1] = 700.0
    for _ in range(4):
        c = rng.uniform([-0.55, -0.3, -0.6], [-0.25, 0.3, 0.6])
        r = rng.uniform(0.03, 0.08)
        vol[(x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2 < r**2] = 0.0
    vol += rng.normal(0, 20, shape).astype(np.float32)
    return vol[None]
