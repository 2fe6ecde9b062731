"""Synthetic chest CT in Hounsfield units - the embedded stand-in for LUNA16 and LiTS.

Each case is deterministic by ``(seed, index)`` and carries the anatomy both CT tasks of the
paper need:

- air, subcutaneous fat and muscle, ribs (periodic in z, following the body wall), the
  spine with discs, an aorta, a heart and two lungs with a vessel tree;
- lung nodules of varied size (4-24 mm) and density (solid 60 %, part-solid 25 %, ground
  glass 15 %), the
  positives of the nodule-candidate task (LUNA16 false-positive reduction);
- negatives that look like nodules at 48^3: vessel crossings, pleural bumps, parenchyma;
- a liver under the right diaphragm with 0-3 hypodense lesions, labelled in the LiTS
  convention (1 liver, 2 tumour) for liver segmentation.

Volumes are ``(X, Y, Z)``: X left -> right, Y posterior -> anterior, Z feet -> head, with
an anisotropic ``spacing`` (mm) as real scans have. Intensities: air -1000, fat ~-100,
soft tissue ~40, lung ~-850, bone 300-800, noise 10-25 HU; clipped to [-1024, 3071].
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pcrl_lib.data.synthetic.fields import case_rng, ellipsoid, grid_mm, smooth_noise, soft_step

CT_SHAPE = (160, 160, 96)
CT_SPACING = (1.6, 1.6, 2.5)


@dataclass(frozen=True)
class Nodule:
    """One lung nodule: centre in voxels ``(x, y, z)``, diameter in mm, kind."""

    center: tuple[int, int, int]
    diameter_mm: float
    kind: str  # "solid" | "part-solid" | "ground-glass"


@dataclass
class SyntheticCTCase:
    """One synthetic chest CT.

    Attributes:
        image: ``(X, Y, Z)`` float32 HU.
        spacing: voxel size in mm per axis.
        liver: ``(X, Y, Z)`` uint8, 0 background, 1 liver, 2 liver tumour (LiTS labels).
        lungs: ``(X, Y, Z)`` bool lung mask (nodules included).
        nodules: the nodules, positives of the candidate task.
        mimics: voxel centres of nodule-like negatives (vessel crossings, pleural bumps).
        body: the generator's anatomical frame - the body's centre (mm from the volume's
            centre) and half-axes (mm; left-right and front-back at mid-height, and half the
            height) - the case's location frame (:func:`pcrl_lib.data.location.synthetic_ct_frame`).
    """

    image: np.ndarray
    spacing: tuple[float, float, float]
    liver: np.ndarray
    lungs: np.ndarray
    nodules: list[Nodule] = field(default_factory=list)
    mimics: list[tuple[int, int, int]] = field(default_factory=list)
    body: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None


def synthetic_chest_ct(
    seed: int,
    index: int,
    shape: tuple[int, int, int] = CT_SHAPE,
    spacing: tuple[float, float, float] = CT_SPACING,
    max_nodules: int = 4,
    extra_mimics: int = 0,
) -> SyntheticCTCase:
    """Generate case ``index`` of the synthetic chest-CT collection ``seed``.

    Args:
        seed, index: the case's identity; the same pair always gives the same case.
        shape: voxels ``(X, Y, Z)``; each axis at least 32.
        spacing: mm per voxel; the field of view is ``shape * spacing``.
        max_nodules: nodules are drawn uniformly from ``0..max_nodules`` (at least one
            in three cases out of four).
        extra_mimics: nodule-like negatives beyond the five every case has (vessel
            crossings, lung wall and parenchyma in turn; drawn last, so the image and the
            first five are those of ``extra_mimics=0``).

    Returns:
        A :class:`SyntheticCTCase`.
    """
    if len(shape) != 3 or min(shape) < 32:
        raise ValueError(f"synthetic_chest_ct: shape must be 3 sizes >= 32, got {shape}")
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"synthetic_chest_ct: spacing must be 3 positive numbers, got {spacing}")
    rng = case_rng(seed, index)
    x, y, z = grid_mm(shape, spacing)
    fov = np.asarray(shape) * np.asarray(spacing)
    zt = z / (fov[2] / 2)  # -1 feet .. 1 head
    noise = smooth_noise(rng, shape, [40 / s for s in spacing])
    noise_fine = smooth_noise(rng, shape, [6 / s for s in spacing])

    # --- body: fat shell around muscle, slightly wider towards the abdomen ---------------
    half_a = fov[0] * rng.uniform(0.40, 0.46)  # the body's half-axes at mid-height
    a = half_a * (1 - 0.04 * zt)
    half_b = fov[1] * rng.uniform(0.29, 0.34)
    b = half_b * (1 - 0.03 * zt)
    r_body = ellipsoid((x, y + 0.02 * fov[1]), (0, 0), (a, b)) + 0.015 * noise
    img = np.full(shape, -1000.0, dtype=np.float32)
    fat_frac = rng.uniform(0.05, 0.12)
    img = np.where(r_body < 1, -100 + 15 * noise_fine, img)
    img = np.where(r_body < 1 - fat_frac, 40 + 10 * noise_fine, img)

    # --- lungs (deformed ellipsoids), heart carved out, liver under the right dome -------
    lung_a, lung_b = a * rng.uniform(0.30, 0.36), b * rng.uniform(0.62, 0.72)
    lung_c = fov[2] * rng.uniform(0.42, 0.50)
    lung_z = fov[2] * rng.uniform(0.08, 0.16)
    r_lung = np.minimum(
        ellipsoid((x, y, z), (-0.47 * a, 0.02 * b, lung_z), (lung_a, lung_b, lung_c)),
        ellipsoid((x, y, z), (0.47 * a, 0.02 * b, lung_z), (lung_a * 0.95, lung_b, lung_c)),
    )
    r_lung = r_lung + 0.06 * noise
    hs = rng.uniform(0.9, 1.15)
    heart = ellipsoid(
        (x, y, z),
        (0.12 * a, 0.30 * b, -0.12 * fov[2]),
        (0.34 * a * hs, 0.42 * b * hs, 0.24 * fov[2] * hs),
    )
    ls = rng.uniform(0.85, 1.1, 3)
    liver_r = ellipsoid(
        (x, y, z),
        (-0.35 * a, 0.05 * b, -0.38 * fov[2]),
        (0.55 * a * ls[0], 0.62 * b * ls[1], 0.24 * fov[2] * ls[2]),
    ) + 0.08 * smooth_noise(rng, shape, [25 / s for s in spacing])
    inside_body = r_body < 1 - fat_frac - 0.03
    lungs = (r_lung < 1) & (heart > 1) & (liver_r > 1) & inside_body
    img = np.where(lungs, -860 + 35 * noise_fine + 20 * noise, img)

    # vessel tree: where two smooth fields both cross zero (curves), thicker near the hilum
    n1 = smooth_noise(rng, shape, [18 / s for s in spacing])
    n2 = smooth_noise(rng, shape, [18 / s for s in spacing])
    hilum = np.minimum(
        ellipsoid((x, y), (-0.2 * a, 0.05 * b), (a, b)),
        ellipsoid((x, y), (0.2 * a, 0.05 * b), (a, b)),
    )
    thick = 0.3 * np.clip(1.2 - hilum, 0.25, 1.0)
    vessel_strength = soft_step(thick - np.sqrt(n1**2 + n2**2), 0.03)
    img = np.where(lungs, img + vessel_strength * (900 + 20 * noise_fine), img)
    img = np.where(heart < 1, 45 + 10 * noise_fine, img)

    liver = np.zeros(shape, dtype=np.uint8)
    liver_mask = (liver_r < 1) & inside_body & (r_lung > 0.98)
    liver[liver_mask] = 1
    img = np.where(liver_mask, 60 + 12 * noise_fine, img)
    liver_vox = np.argwhere(liver_mask)
    for _ in range(rng.integers(0, 4) if len(liver_vox) else 0):
        c = liver_vox[rng.integers(len(liver_vox))] * np.asarray(spacing)
        rad = rng.uniform(4, 16)
        r = ellipsoid((x, y, z), tuple(c - fov / 2 + np.asarray(spacing) / 2), (rad, rad, rad))
        lesion = (r + 0.15 * noise_fine < 1) & liver_mask
        liver[lesion] = 2
        img = np.where(lesion, rng.uniform(5, 35) + 8 * noise_fine, img)

    # --- bones: spine with discs, ribs following the wall, aorta ------------------------
    spine_c = (0.0, -0.68 * b)
    vert = ellipsoid((x, y), spine_c, (0.13 * a, 0.16 * b))
    disc = np.cos(2 * np.pi * z / 26.0) > 0.82
    img = np.where((vert < 1) & ~disc, 300 + 120 * (vert > 0.8) + 20 * noise_fine, img)
    img = np.where((vert < 1) & disc, 80 + 10 * noise_fine, img)
    aorta = ellipsoid((x, y), (0.12 * a, -0.45 * b), (0.07 * a, 0.07 * a))
    img = np.where((aorta < 1) & (zt > -0.9), 45 + 10 * noise_fine, img)
    theta = np.arctan2(y / b, x / a)
    rib_phase = 2 * np.pi * (z - 9.0 * np.abs(np.sin(theta))) / rng.uniform(22, 28)
    rib_shell = (r_body > 1 - fat_frac - 0.07) & (r_body < 1 - fat_frac - 0.02)
    ribs = rib_shell & (np.cos(rib_phase) > 0.72) & (y > -0.75 * b) & (zt > -0.55)
    img = np.where(ribs, 650 + 100 * noise_fine, img)

    # --- nodules in the lungs, nodule-like negatives ------------------------------------
    nodules: list[Nodule] = []
    lung_vox = np.argwhere(lungs[:, :, :])
    n_nod = rng.integers(0, max_nodules + 1) if rng.random() < 0.75 else 0
    for _ in range(n_nod if len(lung_vox) else 0):
        c_vox = lung_vox[rng.integers(len(lung_vox))]
        diam = float(np.exp(rng.uniform(np.log(4), np.log(24))))
        kind = str(rng.choice(["solid", "part-solid", "ground-glass"], p=[0.6, 0.25, 0.15]))
        c_mm = c_vox * np.asarray(spacing) - fov / 2 + np.asarray(spacing) / 2
        r = ellipsoid((x, y, z), tuple(c_mm), (diam / 2,) * 3)
        lobul = 0.12 * noise_fine
        body = soft_step(1 - r - lobul, 0.08)
        hu = {"solid": rng.uniform(-50, 80), "part-solid": rng.uniform(-350, -100)}.get(
            kind, rng.uniform(-550, -350)
        )
        if kind == "part-solid":
            core = soft_step(0.5 - r, 0.08)
            body_hu = img * (1 - body) + hu * body
            img = np.where(lungs | (r < 1.2), body_hu * (1 - core) + 20 * core, img)
        else:
            img = np.where(lungs | (r < 1.2), img * (1 - body) + hu * body, img)
        nodules.append(Nodule(tuple(int(v) for v in c_vox), round(diam, 2), str(kind)))

    mimics: list[tuple[int, int, int]] = []
    vessel_vox = np.argwhere(lungs & (vessel_strength > 0.8))
    wall_vox = np.argwhere(lungs & (r_lung > 0.9))
    for pool in (vessel_vox, vessel_vox, wall_vox, lung_vox):
        if len(pool):
            mimics.append(tuple(int(v) for v in pool[rng.integers(len(pool))]))
    # pleural bump: a small soft-tissue hemisphere on the wall, not a nodule
    if len(wall_vox):
        c_vox = wall_vox[rng.integers(len(wall_vox))]
        c_mm = c_vox * np.asarray(spacing) - fov / 2 + np.asarray(spacing) / 2
        rad = rng.uniform(2, 5)
        bump = ellipsoid((x, y, z), tuple(c_mm), (rad, rad, rad)) < 1
        img = np.where(bump & ~lungs, img, np.where(bump, 30.0, img))
        mimics.append(tuple(int(v) for v in c_vox))

    img = img + rng.uniform(10, 25) * rng.standard_normal(shape, dtype=np.float32)
    img = np.clip(img, -1024, 3071).astype(np.float32)
    pools = [pool for pool in (vessel_vox, wall_vox, lung_vox) if len(pool)]
    for k in range(extra_mimics if pools else 0):
        pool = pools[k % len(pools)]
        mimics.append(tuple(int(v) for v in pool[rng.integers(len(pool))]))
    body = ((0.0, -0.02 * float(fov[1]), 0.0), (float(half_a), float(half_b), float(fov[2]) / 2))
    return SyntheticCTCase(
        img, tuple(float(s) for s in spacing), liver, lungs, nodules, mimics, body
    )
