"""Synthetic chest X-rays with the 14 NIH ChestX-ray14 findings - the embedded stand-in for
ChestX-ray14 and, with a shifted appearance, for CheXpert (the transfer source of Table VI).

A frontal radiograph is drawn as an attenuation picture (bright = dense): torso and
shoulders, two lung fields with vascular markings, mediastinum and heart, diaphragm domes,
posterior ribs, clavicles and spine. Each finding adds the pattern a radiologist looks for,
at a random strength (some cases are subtle):

=====================  ==============================================================
Atelectasis            plate-like band in a lower zone, raised hemidiaphragm
Cardiomegaly           heart wider than half the thorax (cardiothoracic ratio > 0.5)
Effusion               dense base with a meniscus, blunted costophrenic angle
Infiltration           patchy ill-defined opacities
Mass                   one round opacity > 3 cm
Nodule                 one to three small round opacities
Pneumonia              lobar hazy opacity
Pneumothorax           peripheral lucent crescent without markings, visible pleural line
Consolidation          dense homogeneous opacity
Edema                  bilateral perihilar haze with basal septal lines
Emphysema              hyperlucent, over-inflated lungs, flat diaphragm
Fibrosis               peripheral reticular pattern
Pleural_Thickening     bright band along the lateral chest wall / apex
Hernia                 retrocardiac mass with an air-fluid level
=====================  ==============================================================

Labels follow ``Data_Entry_2017.csv``: 14 binary findings, all zero meaning "No Finding".
Prevalences are NIH's, floored at 5 % (:data:`SYNTHETIC_PREVALENCE`) so that small test
splits still hold positives of every finding; AUROC is undefined without them.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from pcrl_lib.data.synthetic.fields import case_rng, smooth_noise, soft_step

NIH_FINDINGS = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)
# ChestX-ray14's label frequencies (Wang et al., CVPR 2017), in NIH_FINDINGS order.
NIH_PREVALENCE = (
    0.103,
    0.025,
    0.119,
    0.177,
    0.052,
    0.056,
    0.013,
    0.047,
    0.042,
    0.021,
    0.022,
    0.015,
    0.030,
    0.002,
)
SYNTHETIC_PREVALENCE = tuple(max(p, 0.05) for p in NIH_PREVALENCE)
DOMAINS = ("nih", "chexpert")


def _blob(u, v, cu, cv, ru, rv, edge=0.25):
    return soft_step(1 - np.sqrt(((u - cu) / ru) ** 2 + ((v - cv) / rv) ** 2), edge)


def synthetic_chest_xray(
    seed: int,
    index: int,
    size: int = 224,
    domain: str = "nih",
    prevalence: tuple[float, ...] = SYNTHETIC_PREVALENCE,
) -> tuple[np.ndarray, np.ndarray]:
    """Generate image ``index`` of the synthetic chest X-ray collection ``seed``.

    Args:
        size: output side in pixels (square).
        domain: ``"nih"`` or ``"chexpert"`` - the second has another scanner's look (a
            gamma curve, lower resolution, positioning shifts, a burnt-in side marker).
        prevalence: probability of each of the 14 findings.

    Returns:
        ``image (size, size)`` float32 in [0, 1] and ``labels (14,)`` float32 in {0, 1}.
    """
    if domain not in DOMAINS:
        raise ValueError(f"synthetic_chest_xray: domain must be one of {DOMAINS}, got {domain!r}")
    if size < 32:
        raise ValueError(f"synthetic_chest_xray: size must be >= 32, got {size}")
    if len(prevalence) != len(NIH_FINDINGS):
        raise ValueError(f"synthetic_chest_xray: need {len(NIH_FINDINGS)} prevalences")
    rng = case_rng(seed, index, stream=DOMAINS.index(domain))
    labels = (rng.random(len(NIH_FINDINGS)) < np.asarray(prevalence)).astype(np.float32)
    has = dict(zip(NIH_FINDINGS, labels > 0, strict=True))

    shift = rng.normal(0, 0.03 if domain == "nih" else 0.07, 2)
    scale = rng.uniform(0.93, 1.05) if domain == "nih" else rng.uniform(0.85, 1.1)
    t = np.linspace(-1, 1, size, dtype=np.float32)
    v, u = np.meshgrid(t, t, indexing="ij")  # v: top -1 .. bottom 1; u: image left .. right
    u, v = (u - shift[0]) / scale, (v - shift[1]) / scale
    markings = smooth_noise(rng, (size, size), size / 28)
    fine = smooth_noise(rng, (size, size), size / 60)

    img = np.full((size, size), rng.uniform(0.02, 0.08), dtype=np.float32)
    torso = soft_step(1 - np.sqrt((u / 0.86) ** 2 + np.maximum(v + 0.1, 0) ** 2 / 1.4), 0.02)
    shoulders = soft_step(-0.62 - v + 0.25 * u**2, 0.05)
    body = np.clip(torso + shoulders * soft_step(0.95 - np.abs(u), 0.03), 0, 1)
    img += body * 0.42

    over = 1.12 if has["Emphysema"] else 1.0
    dome = 0.42 + 0.1 * (over - 1) * 10 * 0.25
    lungs = np.zeros_like(img)
    sides = {}
    for side, cu in (("right", -0.36), ("left", 0.36)):  # patient's right is image left
        du = (u - cu) / (0.27 * over)
        raise_side = 0.08 if has["Atelectasis"] and side == "right" else 0.0
        base = dome - raise_side - 0.16 * np.clip(1 - du**2, 0, 1) * (0.4 if over > 1 else 1)
        lung = _blob(u, v, cu, -0.05, 0.27 * over, 0.6 * over, 0.08) * soft_step(base - v, 0.02)
        sides[side] = lung
        lungs = np.maximum(lungs, lung)
    lung_level = 0.26 if not has["Emphysema"] else 0.33
    img -= lungs * lung_level
    vessel = np.clip(1 - np.abs(markings) / 0.25, 0, 1) * (1 - np.abs(u) * 0.9)
    img += lungs * vessel * (0.05 if not has["Emphysema"] else 0.02)

    heart_w = 0.23 * (rng.uniform(1.35, 1.6) if has["Cardiomegaly"] else rng.uniform(0.9, 1.05))
    heart = _blob(u, v, 0.08, 0.3, heart_w, 0.2, 0.1)
    mediastinum = soft_step(0.12 - np.abs(u - 0.02), 0.02) * soft_step(0.4 - v, 0.05)
    img += np.maximum(heart, mediastinum) * (0.3 + 0.0 * lungs)
    abdomen = soft_step(
        v - (dome + 0.04 - 0.1 * np.clip(1 - (np.abs(u) - 0.36) ** 2 / 0.08, 0, 1)), 0.03
    )
    img += abdomen * body * 0.12
    for k in range(9):  # posterior ribs: curved bands over each lung
        curve = -0.7 + 0.11 * k - 0.25 * (1 - ((np.abs(u) - 0.38) / 0.38) ** 2)
        img += 0.09 * soft_step(0.02 - np.abs(v - curve), 0.008) * (np.abs(u) < 0.72) * body
    img += 0.1 * soft_step(0.02 - np.abs(v - (-0.66 + 0.12 * np.abs(u))), 0.008) * (np.abs(u) < 0.6)
    img += 0.06 * soft_step(0.05 - np.abs(u - 0.02), 0.01) * body

    strength = lambda lo=0.5, hi=1.0: rng.uniform(lo, hi)  # noqa: E731
    pick = lambda: ("right", -0.36) if rng.random() < 0.5 else ("left", 0.36)  # noqa: E731
    if has["Atelectasis"]:
        _, cu = pick()
        band = soft_step(0.03 - np.abs((v - 0.22) - 0.3 * (u - cu)), 0.015)
        img += 0.22 * strength() * band * lungs
    if has["Effusion"]:
        side, cu = pick()
        level = rng.uniform(0.12, 0.3)
        meniscus = dome - level - 0.25 * ((u - cu) / 0.3) ** 2 * np.sign(u - cu) * np.sign(cu)
        img += 0.3 * strength() * soft_step(v - meniscus, 0.03) * sides[side]
    if has["Infiltration"]:
        patch = np.clip(smooth_noise(rng, (size, size), size / 10) - 0.6, 0, None)
        img += 0.22 * strength() * patch * lungs
    if has["Mass"]:
        _, cu = pick()
        img += (
            0.3
            * strength()
            * _blob(
                u,
                v,
                cu + rng.uniform(-0.1, 0.1),
                rng.uniform(-0.35, 0.2),
                *(rng.uniform(0.08, 0.14),) * 2,
                0.15,
            )
        )
    if has["Nodule"]:
        for _ in range(rng.integers(1, 4)):
            _, cu = pick()
            r = rng.uniform(0.02, 0.04)
            img += (
                0.28
                * strength()
                * _blob(u, v, cu + rng.uniform(-0.15, 0.15), rng.uniform(-0.45, 0.25), r, r, 0.2)
                * lungs
            )
    if has["Pneumonia"]:
        _, cu = pick()
        img += 0.2 * strength() * _blob(u, v, cu, rng.uniform(0.0, 0.25), 0.2, 0.16, 0.6) * lungs
    if has["Pneumothorax"]:
        side, cu = pick()
        rim = np.sqrt(((u - cu) / 0.27) ** 2 + ((v + 0.05) / 0.6) ** 2)
        crescent = (
            soft_step(rim - rng.uniform(0.68, 0.8), 0.03) * sides[side] * soft_step(0.1 - v, 0.1)
        )
        img -= crescent * (lungs * vessel * 0.05 + 0.06 * strength())
        img += (
            0.1
            * soft_step(0.012 - np.abs(rim - 0.74), 0.005)
            * sides[side]
            * soft_step(0.1 - v, 0.1)
        )
    if has["Consolidation"]:
        _, cu = pick()
        img += (
            0.35
            * strength()
            * _blob(
                u,
                v,
                cu,
                rng.uniform(-0.2, 0.25),
                rng.uniform(0.1, 0.18),
                rng.uniform(0.1, 0.18),
                0.3,
            )
            * lungs
        )
    if has["Edema"]:
        haze = _blob(u, v, -0.2, 0.0, 0.3, 0.35, 0.8) + _blob(u, v, 0.2, 0.0, 0.3, 0.35, 0.8)
        lines = (
            soft_step(0.006 - np.abs(np.sin(v * 60)) * 0.02, 0.004)
            * soft_step(np.abs(u) - 0.5, 0.05)
            * soft_step(v - 0.15, 0.05)
        )
        img += (0.15 * haze + 0.06 * lines) * strength() * lungs
    if has["Fibrosis"]:
        reticular = np.clip(1 - np.abs(fine) / 0.2, 0, 1)
        img += 0.12 * strength() * reticular * soft_step(np.abs(u) - 0.4, 0.08) * lungs
    if has["Pleural_Thickening"]:
        side, cu = pick()
        rim = np.sqrt(((u - cu) / 0.27) ** 2 + ((v + 0.05) / 0.6) ** 2)
        img += 0.2 * strength() * soft_step(rim - 0.9, 0.03) * soft_step(1.02 - rim, 0.02)
    if has["Hernia"]:
        h = _blob(u, v, -0.02, 0.3, 0.1, 0.08, 0.2)
        img += 0.18 * strength() * h - 0.12 * h * soft_step(0.3 - v, 0.01)

    img = np.clip(img + 0.015 * fine, 0, 1)
    # the scanner's look and noise come from their own stream: a finding changes only itself
    scanner = case_rng(seed, index, stream=10 + DOMAINS.index(domain))
    if domain == "chexpert":
        img = img ** scanner.uniform(0.6, 0.8)
        img = ndimage.gaussian_filter(img, sigma=size / 224 * scanner.uniform(0.8, 1.6))
        m = max(2, size // 20)
        img[m : 2 * m, size - 2 * m : size - m] = 0.95  # burnt-in side marker
    img = img + scanner.normal(0, 0.012 if domain == "nih" else 0.02, img.shape)
    return np.clip(img, 0, 1).astype(np.float32), labels
