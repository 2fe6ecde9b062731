"""Preprocessing, checked against hand-computed values."""

import numpy as np
import pytest

from pcrl_lib.data.preprocess import (
    crop_centered,
    liver_slab,
    normalise_brain,
    resample,
    window_int16,
    xray_uint8,
)


def test_resample_shape_and_linear_ramp():
    ramp = np.broadcast_to(np.arange(10, dtype=np.float32)[None, None, :] * 2.5, (4, 4, 10))
    out = resample(ramp, (0.5, 0.5, 2.5), 1.0)
    assert out.shape == (2, 2, 25)
    # a ramp in mm stays a ramp in mm: inner samples at 1 mm steps rise by 1 (HU per mm)
    np.testing.assert_allclose(np.diff(out[0, 0, 3:-3]), 1.0, atol=1e-5)
    constant = resample(np.full((5, 6, 7), 40.0, np.float32), (0.7, 0.7, 2.5))
    np.testing.assert_allclose(constant, 40.0)
    labels = resample(np.arange(8, dtype=np.uint8).reshape(2, 2, 2), (2.0, 2.0, 2.0), order=0)
    assert labels.shape == (4, 4, 4) and set(np.unique(labels)) == set(range(8))


def test_window_int16_clips_and_rounds():
    out = window_int16(np.array([-3000.0, -999.6, 0.4, 2500.0]), (-1000, 1000))
    assert out.dtype == np.int16 and out.tolist() == [-1000, -1000, 0, 1000]


def test_crop_centered_pads_outside():
    vol = np.arange(5 * 5 * 5, dtype=np.int16).reshape(5, 5, 5)
    crop = crop_centered(vol, (0, 2, 4), 3, fill=-1)
    assert crop.shape == (3, 3, 3)
    assert (crop[0] == -1).all() and (crop[:, :, 2] == -1).all()
    assert crop[1, 1, 1] == vol[0, 2, 4] and crop[2, 0, 0] == vol[1, 1, 3]
    with pytest.raises(ValueError, match="outside"):
        crop_centered(vol, (20, 2, 2), 3, fill=0)


def test_liver_slab_margin_and_clipping():
    mask = np.zeros((2, 2, 100), np.uint8)
    mask[0, 0, 40:61] = 1
    assert liver_slab(mask, 30) == slice(10, 91)
    assert liver_slab(mask, 50) == slice(0, 100)
    with pytest.raises(ValueError, match="no liver"):
        liver_slab(np.zeros((2, 2, 5)), 1)


def test_normalise_brain_zscore_inside_and_crop():
    img = np.zeros((2, 6, 6, 6), np.float32)
    img[0, 1:4, 2:5, 1:5] = np.arange(36).reshape(3, 3, 4)
    img[1, 1:4, 2:5, 1:5] = 7.0 + np.arange(36).reshape(3, 3, 4) * 3
    out, box = normalise_brain(img)
    assert out.shape == (2, 3, 3, 4) and box == (slice(1, 4), slice(2, 5), slice(1, 5))
    np.testing.assert_allclose(out[0], out[1], atol=1e-5)  # affine intensity changes vanish
    np.testing.assert_allclose([out[0].mean(), out[0].std()], [0, 1], atol=1e-5)


def test_xray_uint8_range_and_size():
    img = np.linspace(100, 4000, 30 * 40, dtype=np.float32).reshape(30, 40)
    out = xray_uint8(img, 16)
    assert out.shape == (16, 16) and out.dtype == np.uint8
    assert out.min() <= 8 and out.max() >= 247 and (np.diff(out.astype(int), axis=1) >= 0).all()
