"""Grad-CAM of the chest classifier and the lung-field proxy behind Fig. 9."""

import numpy as np
import pytest
import torch

from pcrl_lib.cam import cam_layer, grad_cam, lung_field_proxy, outside_fraction
from pcrl_lib.data.synthetic.xray import synthetic_chest_xray
from pcrl_lib.models.downstream import Classifier


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Classifier(2, 3, 14).eval()


def test_cam_layer_keeps_at_least_four_pixels(model):
    assert cam_layer(model, 224) is model.encoder.layer4
    assert cam_layer(model, 64) is model.encoder.layer3
    assert cam_layer(model, 32) is model.encoder.layer2


def test_grad_cam_shape_range_and_class_dependence(model):
    x = torch.randn(2, 3, 64, 64)
    maps = grad_cam(model, x, [0, 5], cam_layer(model, 64))
    assert maps.shape == (2, 64, 64)
    assert maps.min() >= 0 and maps.max() <= 1 + 1e-6
    other = grad_cam(model, x, [1, 5], cam_layer(model, 64))
    assert not np.allclose(maps[0], other[0]) and np.allclose(maps[1], other[1], atol=1e-5)
    with pytest.raises(ValueError, match="classes"):
        grad_cam(model, x, [0], cam_layer(model, 64))


def test_lung_proxy_finds_two_dark_fields_and_outside_fraction():
    image, _ = synthetic_chest_xray(0, 3, 128)
    mask = lung_field_proxy(image)
    assert 0.1 < mask.mean() < 0.5
    left, right = mask[:, :64].sum(), mask[:, 64:].sum()
    assert min(left, right) > 0.4 * max(left, right)  # both sides
    assert image[mask].mean() < image[~mask].mean()
    cam = np.zeros_like(image)
    cam[mask] = 1.0
    assert outside_fraction(cam, mask) == 0.0
    assert outside_fraction(1.0 - cam, mask) == 1.0
    assert outside_fraction(np.zeros_like(image), mask) == 0.0
