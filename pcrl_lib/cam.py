"""Grad-CAM heat maps of the chest X-ray classifier (paper Fig. 8a and Fig. 9), through the
``grad-cam`` package (github.com/jacobgil/pytorch-grad-cam).

The paper draws CAMs of the ResNet-18's last block. On the small profiles' images that block
is 1x1 or 2x2, so :func:`cam_layer` takes the deepest block whose output is at least
``min_side`` pixels on a side.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from torch import nn


def cam_layer(model: nn.Module, image_size: int, min_side: int = 4) -> nn.Module:
    """The deepest ResNet block of ``model.encoder`` whose output side (``image_size`` / its
    stride: 4, 8, 16, 32 for ``layer1`` ... ``layer4``) is at least ``min_side``."""
    encoder = model.encoder
    for name, stride in (("layer4", 32), ("layer3", 16), ("layer2", 8)):
        if image_size // stride >= min_side and hasattr(encoder, name):
            return getattr(encoder, name)
    return encoder.layer1


def grad_cam(
    model: nn.Module, images: torch.Tensor, classes: list[int], layer: nn.Module
) -> np.ndarray:
    """Grad-CAM of class ``classes[i]`` for image ``i``.

    Args:
        images: ``(N, C, H, W)`` classifier inputs.
        classes: N class indices (the finding whose evidence is shown).
        layer: the block to take activations and gradients from (:func:`cam_layer`).

    Returns:
        ``(N, H, W)`` float maps in [0, 1], upsampled to the input size.
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    if len(classes) != len(images):
        raise ValueError(f"grad_cam: {len(classes)} classes for {len(images)} images")
    model.eval()
    with GradCAM(model=model, target_layers=[layer]) as cam:
        return cam(input_tensor=images, targets=[ClassifierOutputTarget(k) for k in classes])


def lung_field_proxy(image: np.ndarray) -> np.ndarray:
    """A rough lung-field mask of a chest X-ray ``(H, W)`` in [0, 1]: the darker-than-Otsu
    pixels of the smoothed image inside the thorax's central 80 %, cleaned by opening and
    kept to its two largest parts. Used only to rank CAMs by how much of their mass falls
    outside the lungs (Fig. 9); it is not a segmentation."""
    h, w = image.shape
    smooth = ndimage.gaussian_filter(image.astype(np.float64), sigma=max(1.0, h / 64))
    inner = np.zeros_like(smooth, dtype=bool)
    inner[int(0.1 * h) : int(0.9 * h), int(0.1 * w) : int(0.9 * w)] = True
    values = smooth[inner]
    hist, edges = np.histogram(values, bins=64)
    centres = (edges[:-1] + edges[1:]) / 2
    weights = np.cumsum(hist)
    means = np.cumsum(hist * centres)
    total, total_mean = weights[-1], means[-1]
    between = (total_mean * weights - means * total) ** 2 / np.maximum(
        weights * (total - weights), 1
    )
    mask = (smooth < centres[int(np.argmax(between))]) & inner
    mask = ndimage.binary_opening(mask, iterations=max(1, h // 64))
    labels, n = ndimage.label(mask)
    if n > 2:
        sizes = ndimage.sum(mask, labels, range(1, n + 1))
        keep = 1 + np.argsort(sizes)[-2:]
        mask = np.isin(labels, keep)
    return mask


def outside_fraction(cam: np.ndarray, mask: np.ndarray) -> float:
    """The share of a CAM's mass outside ``mask`` (both ``(H, W)``)."""
    total = float(cam.sum())
    return float(cam[~mask].sum() / total) if total > 0 else 0.0
