"""Anatomical location frames: by hand, from the synthetic generator, by registration (a
known affine recovered), and recorded by preparation."""

import numpy as np
import pytest
from scipy import ndimage

from pcrl_lib.data.location import (
    apply_frame,
    box_location,
    normalized_frame,
    register_volumes,
    synthetic_ct_frame,
)
from pcrl_lib.data.phantom import phantom_ct
from pcrl_lib.data.prepared import PreparedDataset
from pcrl_lib.data.sources.ct import prepare_synthetic_luna
from pcrl_lib.data.synthetic.ct import synthetic_chest_ct


def test_normalized_frame_maps_voxel_centres_into_minus_one_one():
    frame = normalized_frame((4, 10))
    # voxel 0 of 4 -> 2 * 0.5 / 4 - 1 = -0.75; voxel 3 -> 0.75; voxel 9 of 10 -> 0.9
    got = apply_frame(frame, np.array([[0, 0], [3, 9]]))
    assert np.allclose(got, [[-0.75, -0.9], [0.75, 0.9]])
    assert box_location(frame, (0, 2), (4, 6)).tolist() == pytest.approx([0.0, 0.0])
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        apply_frame(np.eye(4), np.zeros((1, 2)))


def test_synthetic_frame_by_hand():
    # 10 voxels of 2 mm resampled to 20 of 1 mm: voxel j at (j + 0.5 - 10) mm from the
    # centre; body centred 2 mm further on axis 0, half-axis 10 mm
    frame = synthetic_ct_frame(
        (10, 8, 4), (2.0, 1.0, 3.0), (20, 8, 12), (2.0, 0.0, 0.0), (10, 4, 6)
    )
    pts = apply_frame(frame, np.array([[0, 0, 0], [19, 7, 11]]))
    assert pts[:, 0].tolist() == pytest.approx([(0.5 - 10 - 2) / 10, (19.5 - 10 - 2) / 10])
    assert pts[:, 1].tolist() == pytest.approx([(0.5 - 4) / 4, (7.5 - 4) / 4])
    assert pts[:, 2].tolist() == pytest.approx([(0.5 - 6) / 6, (11.5 - 6) / 6])


def test_synthetic_cases_report_their_bodys_frame():
    case = synthetic_chest_ct(0, 1, (64, 64, 40), (2.0, 2.0, 2.5))
    (cx, cy, cz), (a, b, c) = case.body
    fov = (128.0, 128.0, 100.0)
    assert (cx, cz) == (0.0, 0.0) and cy == pytest.approx(-0.02 * fov[1])
    assert 0.40 * fov[0] <= a <= 0.46 * fov[0] and 0.29 * fov[1] <= b <= 0.34 * fov[1]
    assert c == fov[2] / 2
    # the image is the one drawn before the frame was recorded (same draws, same voxels)
    assert case.image.shape == (64, 64, 40)


def test_registration_recovers_a_known_affine():
    reference = phantom_ct((64, 64, 48), seed=0)[0]
    shift = np.array([3.0, -2.0, 1.0])
    # moving voxel o shows the reference at 0.9 o + shift
    moving = ndimage.affine_transform(
        reference, np.diag([0.9] * 3), offset=shift, output_shape=(64, 64, 48), order=1, cval=-1000
    )
    frame = register_volumes(moving, reference, step=1.0)
    pts = np.array([[20, 30, 20], [40, 25, 30], [32, 32, 24]], float)
    truth = apply_frame(normalized_frame(reference.shape), pts * 0.9 + shift)
    assert np.abs(apply_frame(frame, pts) - truth).max() < 0.02  # under a voxel (2 / 64)


def test_prepared_synthetic_volumes_record_their_frame(tmp_path):
    prepare_synthetic_luna(tmp_path, n=3, shape=(48, 48, 32), spacing=(2.0, 2.0, 2.5), crop=16)
    data = PreparedDataset(tmp_path / "volumes")
    for case in data.manifest.index:
        i = int(case[2:])  # ct0001 -> 1
        arrays = data.load(case)
        body = synthetic_chest_ct(0, i, (48, 48, 32), (2.0, 2.0, 2.5)).body
        shape = arrays["image"].shape[1:]
        expected = synthetic_ct_frame((48, 48, 32), (2.0, 2.0, 2.5), shape, *body)
        assert np.allclose(arrays["frame"], expected, atol=1e-6)
        # the body's centre voxel lies at the frame's origin
        centre = np.linalg.solve(arrays["frame"][:3, :3].astype(float), -arrays["frame"][:3, 3])
        assert np.all(centre > 0) and np.all(centre < np.array(shape))
