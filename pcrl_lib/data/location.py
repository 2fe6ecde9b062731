"""Anatomical location: where a voxel of a scan lies in a reference frame shared by scans.

A *frame* is a ``(4, 4)`` affine from a volume's voxel indices ``(i, j, k, 1)`` to
coordinates of the reference anatomy, about ``[-1, 1]`` along each axis over the body.
DrasCLR (:mod:`pcrl_lib.methods.drasclr`) conditions its encoder on the location of a patch
and keeps negatives per anatomical region, so scans must agree on where things are:

- synthetic CT (:func:`synthetic_ct_frame`): from the generator's own coordinates - its body
  ellipse's centre and half-axes, which vary from case to case;
- real CT (:func:`register_to_reference`): an affine registration (SimpleITK; Mattes mutual
  information, three resolutions) of the scan to a reference volume, composed with the
  reference's own :func:`normalized_frame`;
- anything else: the volume's own extent (:func:`normalized_frame`).

The prepared LUNA volumes record their frame as the case array ``frame``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def normalized_frame(shape: Sequence[int]) -> np.ndarray:
    """The frame of a volume's own extent: voxel centre ``i`` -> ``2 (i + 1/2) / n - 1``."""
    frame = np.eye(len(shape) + 1)
    for a, n in enumerate(shape):
        frame[a, a] = 2 / n
        frame[a, -1] = 1 / n - 1
    return frame


def apply_frame(frame: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``(N, d)`` voxel coordinates -> ``(N, d)`` reference coordinates."""
    points = np.asarray(points, dtype=np.float64)
    frame = np.asarray(frame, dtype=np.float64)
    d = points.shape[-1]
    if frame.shape != (d + 1, d + 1):
        raise ValueError(f"a frame for {d}D points is ({d + 1}, {d + 1}), got {frame.shape}")
    return points @ frame[:d, :d].T + frame[:d, d]


def box_location(frame: np.ndarray, start: Sequence[int], size: Sequence[int]) -> np.ndarray:
    """The reference coordinates of a crop's centre voxel position ``start + (size - 1) / 2``."""
    centre = np.asarray(start, dtype=np.float64) + (np.asarray(size, dtype=np.float64) - 1) / 2
    return apply_frame(frame, centre[None])[0]


def synthetic_ct_frame(
    shape: Sequence[int],
    spacing: Sequence[float],
    out_shape: Sequence[int],
    centre_mm: Sequence[float],
    half_axes_mm: Sequence[float],
) -> np.ndarray:
    """The frame of a synthetic CT (:func:`pcrl_lib.data.synthetic.ct.synthetic_chest_ct`)
    resampled from ``shape`` at ``spacing`` to ``out_shape`` (``align_corners=False``, the
    field of view kept): output voxel ``j`` lies at ``(j + 1/2 - m / 2) n s / m`` mm from the
    volume's centre (``n`` voxels of ``s`` mm resampled to ``m``); its location is that
    position relative to the body's ``centre_mm``, divided by the body's ``half_axes_mm``."""
    frame = np.eye(4)
    for a in range(3):
        step = shape[a] * spacing[a] / out_shape[a]
        frame[a, a] = step / half_axes_mm[a]
        frame[a, 3] = ((0.5 - out_shape[a] / 2) * step - centre_mm[a]) / half_axes_mm[a]
    return frame


def _image(array: np.ndarray, spacing: Sequence[float]):
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(array, (2, 1, 0)), np.float32))
    img.SetSpacing(tuple(float(s) for s in spacing))
    return img


def register_to_reference(
    moving: np.ndarray,
    moving_spacing: Sequence[float],
    reference: np.ndarray,
    reference_spacing: Sequence[float],
    iterations: int = 200,
    seed: int = 0,
) -> np.ndarray:
    """The frame of ``moving`` ``(X, Y, Z)`` in ``reference``'s: an affine registration
    (SimpleITK: centred initialisation, Mattes mutual information on 10 % of the voxels,
    regular-step gradient descent at shrink factors 4, 2, 1 - those that leave 8 voxels per
    axis) composed with the reference's
    :func:`normalized_frame`. ``(4, 4)`` float64."""
    import SimpleITK as sitk

    fixed_img = _image(reference, reference_spacing)
    moving_img = _image(moving, moving_spacing)
    initial = sitk.CenteredTransformInitializer(
        fixed_img, moving_img, sitk.AffineTransform(3),
        sitk.CenteredTransformInitializerFilter.GEOMETRY,
    )  # fmt: skip
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(0.1, seed)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0, minStep=1e-4, numberOfIterations=iterations
    )
    reg.SetOptimizerScalesFromPhysicalShift()
    shrink = [f for f in (4, 2, 1) if min(reference.shape) / f >= 8] or [1]  # small images
    reg.SetShrinkFactorsPerLevel(shrink)
    reg.SetSmoothingSigmasPerLevel([{4: 2, 2: 1, 1: 0}[f] for f in shrink])
    reg.SetInitialTransform(initial, inPlace=False)
    transform = reg.Execute(fixed_img, moving_img)  # maps reference points to moving points
    if isinstance(transform, sitk.CompositeTransform):
        transform = transform.GetNthTransform(0)
    inverse = sitk.AffineTransform(transform).GetInverse()  # moving physical -> reference physical
    # voxel index -> moving physical (origin 0, axis-aligned) -> reference physical -> index
    m_spacing = np.diag(list(moving_spacing) + [1.0])
    r_index = np.diag([1 / s for s in reference_spacing] + [1.0])
    matrix = np.eye(4)
    matrix[:3, :3] = np.asarray(inverse.GetMatrix()).reshape(3, 3)
    centre = np.asarray(inverse.GetCenter())
    matrix[:3, 3] = np.asarray(inverse.GetTranslation()) + centre - matrix[:3, :3] @ centre
    return normalized_frame(reference.shape) @ r_index @ matrix @ m_spacing


def register_volumes(moving: np.ndarray, reference: np.ndarray, step: float = 4.0) -> np.ndarray:
    """:func:`register_to_reference` of two 1 mm volumes, computed on ``step`` mm copies
    (:func:`pcrl_lib.data.preprocess.resample`; a second instead of minutes; coarser than
    1/24 of the smaller volume's shortest axis never) and returned for
    the 1 mm voxel grid of ``moving``: index ``i`` is at ``(i + 1/2) m / n - 1/2`` of the
    ``m``-voxel copy of its ``n`` voxels."""
    from pcrl_lib.data.preprocess import resample

    step = min(step, max(1.0, min(*moving.shape, *reference.shape) / 24))
    small_m = resample(moving, (1.0, 1.0, 1.0), step)
    small_r = resample(reference, (1.0, 1.0, 1.0), step)
    frame = register_to_reference(small_m, (1.0,) * 3, small_r, (1.0,) * 3)
    to_small = np.eye(4)
    for a in range(3):
        ratio = small_m.shape[a] / moving.shape[a]
        to_small[a, a] = ratio
        to_small[a, 3] = 0.5 * ratio - 0.5
    return frame @ to_small
