"""Does an image look like its modality? Checks run on every real case before it is
written, each an error that names the file and says what looks wrong (issue-tracker class
"implausible images pass"): a constant image, a volume too thin to crop, a CT without air
(16-bit values stored without their rescale intercept) or made of air only, 8-bit values
given as CT, float arrays where 8-bit images are expected.
"""

from __future__ import annotations

import os

import numpy as np

MIN_SIDE = 8  # voxels: the smallest 3D crop of any profile is 8^3 (the local views)
AIR_HU = -500.0  # below: air (lung, outside the body); every chest or abdominal CT has some


def check_not_constant(image: np.ndarray, where: str | os.PathLike) -> None:
    """Raise ``ValueError`` when every value of ``image`` is the same (all zeros, all air)."""
    lo, hi = float(np.min(image)), float(np.max(image))
    if hi - lo <= 1e-6 * max(1.0, abs(hi)):
        raise ValueError(f"{where}: constant image (every value is {lo:g})")


def check_min_size(
    shape: tuple[int, ...], where: str | os.PathLike, minimum: int = MIN_SIDE
) -> None:
    """Raise ``ValueError`` when a volume has fewer than ``minimum`` voxels along an axis."""
    if min(shape) < minimum:
        raise ValueError(
            f"{where}: {tuple(shape)} voxels - fewer than {minimum} along an axis (a one-slice "
            "'volume'?); the crops need at least that"
        )


def check_ct(hu: np.ndarray, where: str | os.PathLike) -> None:
    """A CT volume in Hounsfield units: not constant, at least :data:`MIN_SIDE` voxels per
    axis, some air below -500 HU and some tissue above it, not 8-bit values."""
    check_min_size(hu.shape, where)
    check_not_constant(hu, where)
    lo, hi = float(np.min(hu)), float(np.max(hu))
    if lo >= 0 and hi <= 255:
        raise ValueError(
            f"{where}: values in [{lo:g}, {hi:g}] - 8-bit data (an MRI, a screenshot) given as "
            "CT; a CT is in Hounsfield units, air at -1000"
        )
    if lo > AIR_HU:
        raise ValueError(
            f"{where}: no voxel below {AIR_HU:g} HU (minimum {lo:g}) - a CT has air; 16-bit "
            "values stored without their rescale intercept (-1024), or not a CT?"
        )
    if hi < AIR_HU:
        raise ValueError(f"{where}: every voxel below {AIR_HU:g} HU (maximum {hi:g}) - air only")


def check_mri(volume: np.ndarray, where: str | os.PathLike) -> None:
    """An MRI contrast: not constant, at least :data:`MIN_SIDE` voxels per axis."""
    check_min_size(volume.shape, where)
    check_not_constant(volume, where)


def check_8bit(images: np.ndarray, where: str | os.PathLike) -> None:
    """Arrays that must hold 8-bit images (MedMNIST): integers in [0, 255] - floats in
    [0, 1] would become all zeros when stored as 8 bits."""
    if not np.issubdtype(images.dtype, np.integer):
        lo, hi = float(np.min(images)), float(np.max(images))
        raise ValueError(
            f"{where}: {images.dtype} values in [{lo:g}, {hi:g}] where 8-bit integer images are "
            "expected (MedMNIST stores uint8); convert them with the scale they were made with"
        )
    if images.min() < 0 or images.max() > 255:
        raise ValueError(f"{where}: values outside [0, 255] for 8-bit images")
