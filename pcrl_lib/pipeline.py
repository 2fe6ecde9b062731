"""From one image to one PCRLv2 training sample: views (sub-crop / multi-crop) plus
augmentations, cut on the fly (Fig. 2, Sec. 3.4, Sec. 4.3).

:class:`ViewGenerator` turns a raw image ``(C, *S)`` (CT in Hounsfield units, or an X-ray
in [0, 1]) into the dict that :class:`pcrl_lib.methods.PCRLv2` consumes::

    {"global1", "global2": (C, *global_out)   inputs (global + local augmentation)
     "target1", "target2": (C, *global_out)   restoration targets (global augmentation)
     "locals": (L, C, *local_out)}            local views (absent for crops "none")

It is deterministic for a given ``seed``: the same (image, seed) gives the same sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from pcrl_lib.augment import (
    AugmentConfig,
    corrupt,
    paper_augment_config,
    resample_views,
    torchio_pipeline,
)
from pcrl_lib.views import ViewConfig, crop_resize, paper_view_config, sample_boxes


@dataclass(frozen=True)
class Intensity:
    """Map raw intensities to the network's range: clip to ``window`` then scale to [0, 1].

    CT: the paper's HU window [-1000, 1000]. ``window=None`` leaves values unchanged.
    """

    window: tuple[float, float] | None = (-1000.0, 1000.0)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Elementwise on any shape."""
        if self.window is None:
            return x
        lo, hi = self.window
        return (x.clamp(lo, hi) - lo) / (hi - lo)


@dataclass(frozen=True)
class ViewGenerator:
    """One PCRLv2 sample from one image.

    Args:
        views: where the crops come from (:func:`pcrl_lib.views.paper_view_config`).
        augment: the global and local augmentations (:class:`AugmentConfig`).
        intensity: raw -> [0, 1] mapping applied after resampling (linear interpolation
            commutes with the linear map; clipping is applied to the interpolated values).
        backend: ``"torch"`` (batched, fast) or ``"torchio"`` (the official pipeline's
            torchio transforms, one view at a time; 3D only).
    """

    views: ViewConfig = field(default_factory=lambda: paper_view_config(3))
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    intensity: Intensity = field(default_factory=Intensity)
    backend: str = "torch"

    def __post_init__(self) -> None:
        if self.backend not in ("torch", "torchio"):
            raise ValueError(f"backend must be 'torch' or 'torchio', got {self.backend!r}")
        if self.backend == "torchio" and self.views.spatial_dims != 3:
            raise ValueError("the torchio backend is 3D only")

    def __call__(self, image: np.ndarray | torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
        """``image``: ``(C, *S)`` raw; returns the sample dict (see the module docstring)."""
        d = self.views.spatial_dims
        if image.ndim != d + 1:
            raise ValueError(
                f"expected an image (C, {'*' * d}) with {d} spatial axes, got shape {tuple(image.shape)}"
            )
        rng = np.random.default_rng(seed)
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        img = torch.as_tensor(image)
        boxes = sample_boxes(img.shape[1:], self.views, rng, image=img.numpy())
        if self.backend == "torchio":
            return self._torchio(img, boxes)
        cfg = self.augment
        targets = self.intensity(
            resample_views(img, [boxes.global1, boxes.global2], self.views.global_out, cfg, gen)
        )
        inputs = corrupt(targets, cfg, cfg.local_ops, gen)
        out = {
            "global1": inputs[0],
            "global2": inputs[1],
            "target1": targets[0],
            "target2": targets[1],
        }
        if boxes.locals:
            loc = self.intensity(
                resample_views(img, list(boxes.locals), self.views.local_out, cfg, gen)
            )
            out["locals"] = corrupt(loc, cfg, cfg.local_view_ops, gen)
        return out

    def _torchio(self, img: torch.Tensor, boxes) -> dict[str, torch.Tensor]:
        """The official pipeline: cut, resize, then torchio transforms per view."""
        spatial, global_corrupt, local_corrupt = torchio_pipeline(self.augment)
        out = {}
        for i, box in enumerate((boxes.global1, boxes.global2), start=1):
            target = spatial(self.intensity(crop_resize(img.numpy(), box, self.views.global_out)))
            out[f"target{i}"] = target
            out[f"global{i}"] = global_corrupt(target)
        if boxes.locals:
            out["locals"] = torch.stack(
                [
                    local_corrupt(
                        spatial(self.intensity(crop_resize(img.numpy(), b, self.views.local_out)))
                    )
                    for b in boxes.locals
                ]
            )
        return out


def paper_view_generator(
    spatial_dims: int,
    crops: str = "sub",
    preset: str = "paper",
    window: tuple[float, float] | None | str = "auto",
    **view_overrides,
) -> ViewGenerator:
    """The paper's settings (Sec. 4.3) for 3D CT (HU window) or 2D X-ray (values in [0, 1]);
    ``preset="official"`` draws the 3D crops as the released code
    (:func:`pcrl_lib.views.paper_view_config`). ``window``: the intensity window mapped to
    [0, 1] (:class:`Intensity`; ``None``: unchanged); ``"auto"``: HU [-1000, 1000] in 3D,
    ``None`` in 2D - pre-training on prepared data passes its modality's
    (:func:`pcrl_lib.data.datasets.pretraining_window`)."""
    if window == "auto":
        window = (-1000.0, 1000.0) if spatial_dims == 3 else None
    return ViewGenerator(
        views=paper_view_config(spatial_dims, crops, preset, **view_overrides),
        augment=paper_augment_config(spatial_dims),
        intensity=Intensity(window),
    )
