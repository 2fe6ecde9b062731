"""Reading medical image files, with errors that name the file and the problem.

Volumes come back as ``(X, Y, Z)`` arrays with spacing in mm per axis, whatever the file's
own axis order (SimpleITK returns ``(Z, Y, X)``; NIfTI is already ``(i, j, k)``), and in one
**canonical orientation** read from the header: axis 0 runs towards the patient's left,
axis 1 towards posterior, axis 2 towards superior (LPS+, DICOM's and ITK's convention). A
scan stored with a flipped direction, or a coronal one with permuted axes, comes out as the
same array as one stored canonically; origin and direction are updated so that world
coordinates keep pointing at the same anatomy (ITK files: LPS world; NIfTI files: their RAS
world). :func:`check_aligned` checks that two volumes that must overlay (image and mask, the
contrasts of one subject) share shape, spacing, origin and direction.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pcrl_lib.data.prepared import check_finite, check_labels


@dataclass(frozen=True)
class Volume:
    """A volume ``array (X, Y, Z)`` with ``spacing`` (mm), ``origin`` (mm) and ``direction``
    (3x3, columns are the axes' directions in world space)."""

    array: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[tuple[float, ...], ...] = ((1, 0, 0), (0, 1, 0), (0, 0, 1))

    def world_to_voxel(self, world: np.ndarray) -> np.ndarray:
        """World coordinates ``(..., 3)`` in mm to (fractional) voxel indices ``(..., 3)``."""
        d = np.asarray(self.direction, dtype=float)
        rel = np.asarray(world, dtype=float) - np.asarray(self.origin)
        return np.linalg.solve(d, rel.T).T / np.asarray(self.spacing)


def _existing(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing file: {path}")
    return path


def read_itk(path: str | os.PathLike) -> Volume:
    """Read an ``.mhd``/``.raw`` (or any SimpleITK format) volume as float32 ``(X, Y, Z)``."""
    import SimpleITK as sitk

    path = _existing(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1] if str(err).strip() else "unknown error"
        raise ValueError(f"{path}: unreadable volume ({first})") from err
    if image.GetDimension() != 3:
        raise ValueError(f"{path}: expected a 3D volume, got {image.GetDimension()}D")
    image = sitk.DICOMOrient(image, "LPS")  # canonical voxel order (module docstring)
    array = np.transpose(sitk.GetArrayFromImage(image), (2, 1, 0)).astype(np.float32)
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    return Volume(
        check_finite(array, path),
        tuple(float(s) for s in image.GetSpacing()),
        tuple(float(o) for o in image.GetOrigin()),
        tuple(tuple(row) for row in direction),
    )


def _canonical(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``array`` flipped / transposed to LPS+ voxel order, and its new affine."""
    from nibabel import orientations as ornt

    current = ornt.io_orientation(affine)
    change = ornt.ornt_transform(current, ornt.axcodes2ornt(("L", "P", "S")))
    out = ornt.apply_orientation(array, change)
    return out, affine @ ornt.inv_ornt_aff(change, array.shape)


def check_aligned(
    a: Volume,
    b: Volume,
    where_a: str | os.PathLike,
    where_b: str | os.PathLike,
    tol_mm: float = 1e-2,
) -> None:
    """Raise ``ValueError`` naming both files when two volumes that must overlay differ in
    shape, spacing (``tol_mm``), origin (``tol_mm``) or direction (1e-3)."""
    what = []
    if a.array.shape != b.array.shape:
        what.append(f"shape {a.array.shape} vs {b.array.shape}")
    if not np.allclose(a.spacing, b.spacing, atol=tol_mm):
        what.append(f"spacing {a.spacing} vs {b.spacing}")
    if not np.allclose(a.origin, b.origin, atol=tol_mm):
        what.append(f"origin {a.origin} vs {b.origin}")
    if not np.allclose(a.direction, b.direction, atol=1e-3):
        what.append(f"direction {a.direction} vs {b.direction}")
    if what:
        raise ValueError(f"{where_a} and {where_b} do not overlay: {'; '.join(what)}")


def read_nifti(path: str | os.PathLike, dtype: type = np.float32) -> Volume:
    """Read a ``.nii`` / ``.nii.gz`` volume as ``dtype`` ``(X, Y, Z)`` with its voxel size."""
    import nibabel as nib

    path = _existing(path)
    try:
        image = nib.load(str(path))
        array = np.asarray(image.dataobj)
    except Exception as err:  # nibabel raises several types for damaged files
        raise ValueError(f"{path}: unreadable NIfTI ({type(err).__name__}: {err})") from err
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise ValueError(f"{path}: expected a 3D volume, got shape {array.shape}")
    array, affine = _canonical(array, image.affine)
    array = array.astype(dtype)
    zooms = tuple(float(z) for z in np.linalg.norm(affine[:3, :3], axis=0))
    direction = affine[:3, :3] / np.asarray(zooms)
    return Volume(
        check_finite(array, path),
        zooms,
        tuple(float(v) for v in affine[:3, 3]),
        tuple(tuple(row) for row in direction),
    )


def read_label_nifti(path: str | os.PathLike, allowed: tuple[int, ...]) -> Volume:
    """:func:`read_nifti` of a segmentation, its values checked as stored - before any cast
    (:func:`pcrl_lib.data.prepared.check_labels`) - and returned as int16."""
    volume = read_nifti(path, np.float64)
    labels = check_labels(volume.array, allowed, path).astype(np.int16)
    return Volume(labels, volume.spacing, volume.origin, volume.direction)


def read_grey_image(path: str | os.PathLike) -> np.ndarray:
    """Read a PNG / JPEG as a 2D float32 grey-scale array."""
    from PIL import Image, UnidentifiedImageError

    path = _existing(path)
    try:
        with Image.open(path) as img:
            if img.mode in ("RGB", "RGBA", "P", "LA", "CMYK"):
                img = img.convert("L")  # noqa: PLW2901 - colour PNGs exist in NIH's release
            return np.asarray(img.convert("F"), dtype=np.float32)
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"{path}: unreadable image ({err})") from err
