"""Synthetic brain MRI with a glioma - the embedded stand-in for BraTS 2018.

Four co-registered, skull-stripped contrasts (T1, T1ce, T2, FLAIR) of a brain: CSF, a
cortex with gyri (grey matter), white matter and ventricles; each case has one tumour of
nested compartments labelled in the BraTS convention:

- 2 peritumoural oedema (outermost; bright in T2 and FLAIR),
- 4 enhancing tumour (a rim that lights up in T1ce only),
- 1 necrotic / non-enhancing core (inside the rim; dark in T1, bright in T2).

Regions evaluated (as BraTS): whole tumour WT = {1, 2, 4}, tumour core TC = {1, 4},
enhancing tumour ET = {4}. Intensities are arbitrary scanner units with a per-case gain, a
smooth bias field per contrast and Rician-like noise, so per-modality normalisation matters
as it does for real scans. Volumes are ``(C=4, X, Y, Z)`` at 1 mm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pcrl_lib.data.synthetic.fields import case_rng, ellipsoid, grid_mm, smooth_noise

MRI_SHAPE = (96, 96, 80)
MODALITIES = ("t1", "t1ce", "t2", "flair")
BRATS_LABELS = (0, 1, 2, 4)

# Mean intensity of each tissue per contrast (t1, t1ce, t2, flair), roughly as radiologists
# describe them: WM brighter than GM in T1, CSF bright in T2 and dark in FLAIR, oedema bright
# in T2/FLAIR, enhancement only in T1ce.
_TISSUE = {
    "background": (0.0, 0.0, 0.0, 0.0),
    "fat": (0.95, 0.95, 0.55, 0.6),
    "skull": (0.08, 0.08, 0.06, 0.06),
    "csf": (0.22, 0.22, 1.0, 0.12),
    "gm": (0.55, 0.57, 0.62, 0.62),
    "wm": (0.78, 0.8, 0.45, 0.5),
    "oedema": (0.5, 0.52, 0.86, 0.92),
    "necrosis": (0.25, 0.28, 0.92, 0.55),
    "enhancing": (0.58, 1.0, 0.72, 0.78),
}


@dataclass
class SyntheticMRICase:
    """One synthetic brain MRI: ``image (4, X, Y, Z)`` float32 in modality order
    :data:`MODALITIES`, ``seg (X, Y, Z)`` uint8 with labels in {0, 1, 2, 4}, ``brain`` mask."""

    image: np.ndarray
    seg: np.ndarray
    brain: np.ndarray


def synthetic_brain_mri(
    seed: int, index: int, shape: tuple[int, int, int] = MRI_SHAPE
) -> SyntheticMRICase:
    """Generate case ``index`` of the synthetic brain-MRI collection ``seed`` (1 mm voxels).

    The tumour's whole extent spans about 10-35 % of the brain's width; its contrast to the
    surrounding tissue varies by case, so small-label training is hard.
    """
    if len(shape) != 3 or min(shape) < 32:
        raise ValueError(f"synthetic_brain_mri: shape must be 3 sizes >= 32, got {shape}")
    rng = case_rng(seed, index)
    x, y, z = grid_mm(shape, (1.0, 1.0, 1.0))
    half = np.asarray(shape, dtype=float) / 2
    head_radii = half * np.array([0.86, 0.92, 0.9]) * rng.uniform(0.92, 1.0, 3)
    warp = smooth_noise(rng, shape, 24)
    gyri = smooth_noise(rng, shape, 5)
    r = ellipsoid((x, y, z), (0, 0, 0), head_radii) + 0.02 * warp

    tissue = np.zeros(shape, dtype=np.uint8)  # index into the list below
    names = list(_TISSUE)
    scalp, skull, csf_shell = 0.06, 0.1, 0.13
    tissue[r < 1] = names.index("fat")
    tissue[r < 1 - scalp] = names.index("skull")
    tissue[r < 1 - skull] = names.index("csf")
    brain = r < 1 - csf_shell
    cortex_depth = 0.12 + 0.05 * gyri
    tissue[brain] = names.index("gm")
    wm = r < 1 - csf_shell - cortex_depth
    tissue[wm] = names.index("wm")
    vent_r = head_radii * np.array([0.1, 0.28, 0.16]) * rng.uniform(0.8, 1.3)
    for side in (-1, 1):
        v = ellipsoid(
            (x, y, z),
            (side * 0.12 * head_radii[0], 0.05 * head_radii[1], 0.1 * head_radii[2]),
            vent_r,
        )
        tissue[(v + 0.1 * warp < 1) & brain] = names.index("csf")

    # tumour: oedema blob > core blob > enhancing rim around necrosis
    wm_vox = np.argwhere(wm)
    c = wm_vox[rng.integers(len(wm_vox))] - (np.asarray(shape) - 1) / 2
    r_wt = head_radii[0] * rng.uniform(0.18, 0.4)
    t_noise = smooth_noise(rng, shape, 8)
    d = ellipsoid(
        (x, y, z), tuple(c), (r_wt, r_wt * rng.uniform(0.8, 1.2), r_wt * rng.uniform(0.8, 1.2))
    )
    seg = np.zeros(shape, dtype=np.uint8)
    wt = (d + 0.18 * t_noise < 1) & brain
    core_frac = rng.uniform(0.35, 0.7)
    tc = (d + 0.12 * t_noise < core_frac) & wt
    necrosis = (d + 0.12 * t_noise < core_frac * rng.uniform(0.4, 0.75)) & tc
    seg[wt] = 2
    seg[tc] = 4
    seg[necrosis] = 1
    tissue[seg == 2] = names.index("oedema")
    tissue[seg == 4] = names.index("enhancing")
    tissue[seg == 1] = names.index("necrosis")

    table = np.asarray([_TISSUE[n] for n in names], dtype=np.float32)  # (tissues, 4)
    # the tumour's contrast to its surroundings varies by case (subtle ... obvious)
    tumour_contrast = rng.uniform(0.35, 1.0)
    for name in ("oedema", "necrosis", "enhancing"):
        i = names.index(name)
        table[i] = table[names.index("wm")] + tumour_contrast * (
            table[i] - table[names.index("wm")]
        )
    image = np.moveaxis(table[tissue], -1, 0)  # (4, X, Y, Z)
    texture = smooth_noise(rng, shape, 3)
    intracranial = r < 1 - skull
    for m in range(4):
        bias = 1 + 0.12 * smooth_noise(rng, shape, 48)
        gain = rng.uniform(200, 1200)
        signal = (image[m] * (1 + 0.05 * texture)) * bias * gain
        sigma = 0.03 * gain
        noisy = np.hypot(
            signal + sigma * rng.standard_normal(shape), sigma * rng.standard_normal(shape)
        )
        image[m] = np.where(intracranial, noisy, 0.0)  # skull-stripped, as BraTS releases
    return SyntheticMRICase(image.astype(np.float32), seg, brain)
