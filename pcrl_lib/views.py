"""Where the views come from: sub-crop and multi-crop (PCRLv2 Sec. 3.4, Fig. 5).

Pure array geometry - no model, no augmentation. A crop is a :class:`Box` in voxel (or
pixel) coordinates; :func:`sample_boxes` draws the two global crops and the local crops of
one sample; :func:`crop_resize` cuts a box out of an array and resizes it.

- **sub-crop** (the paper): two global crops whose IoU is at least ``min_iou`` (0.3), their
  minimum bounding box, and ``n_locals`` (6) local crops drawn inside that box, so that the
  local views see the anatomy the global views share.
- **multi-crop** (Caron et al., SwAV, NeurIPS 2020): global and local crops drawn
  independently anywhere in the image.
- **none**: two independent global crops, no local views.

Crop sizes are either a list of fixed sizes (3D: the paper's {64x64x32, 96x96x64,
96x96x96, 112x112x64} globals and {8^3, 16^3, 32x32x16, 32^3} locals) or an area fraction
range with an aspect-ratio range (2D: torchvision's RandomResizedCrop with scale [0.3, 1]
for globals and [0.05, 0.3] for locals).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F

CROP_MODES = ("sub", "multi", "none")


@dataclass(frozen=True)
class Box:
    """An axis-aligned crop: ``start`` (inclusive) and ``size`` per spatial axis."""

    start: tuple[int, ...]
    size: tuple[int, ...]

    @property
    def stop(self) -> tuple[int, ...]:
        """Exclusive end per axis."""
        return tuple(s + n for s, n in zip(self.start, self.size, strict=True))

    @property
    def volume(self) -> int:
        """Number of voxels (pixels)."""
        return math.prod(self.size)

    @property
    def slices(self) -> tuple[slice, ...]:
        """Slices that cut this box out of an array's spatial axes."""
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop, strict=True))

    def contains(self, other: Box) -> bool:
        """Whether ``other`` lies entirely inside this box."""
        return all(
            a <= c and d <= b
            for a, b, c, d in zip(self.start, self.stop, other.start, other.stop, strict=True)
        )


def intersection_volume(a: Box, b: Box) -> int:
    """Voxels shared by ``a`` and ``b``."""
    sides = [
        max(0, min(a1, b1) - max(a0, b0))
        for a0, a1, b0, b1 in zip(a.start, a.stop, b.start, b.stop, strict=True)
    ]
    return math.prod(sides)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes, in [0, 1]."""
    inter = intersection_volume(a, b)
    return inter / (a.volume + b.volume - inter)


def enclosing_box(a: Box, b: Box) -> Box:
    """The minimum bounding box of ``a`` and ``b`` (Sec. 3.4)."""
    start = tuple(min(x, y) for x, y in zip(a.start, b.start, strict=True))
    stop = tuple(max(x, y) for x, y in zip(a.stop, b.stop, strict=True))
    return Box(start, tuple(e - s for s, e in zip(start, stop, strict=True)))


@dataclass(frozen=True)
class CropSizes:
    """How crop sizes are drawn: a list of fixed ``sizes`` or an area ``scale`` range.

    Attributes:
        sizes: fixed sizes to choose from uniformly (3D paper setting).
        scale: ``(lo, hi)`` fraction of the image's area / volume (2D paper setting).
        ratio: aspect-ratio range (first axis over second) for ``scale`` sampling.
    """

    sizes: tuple[tuple[int, ...], ...] | None = None
    scale: tuple[float, float] | None = None
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    def __post_init__(self) -> None:
        if (self.sizes is None) == (self.scale is None):
            raise ValueError("CropSizes: give exactly one of sizes or scale")
        if self.scale is not None and not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ValueError(f"CropSizes: scale must satisfy 0 < lo <= hi <= 1, got {self.scale}")

    def sample(self, shape: Sequence[int], rng: np.random.Generator) -> tuple[int, ...]:
        """A crop size that fits ``shape`` (raises ``ValueError`` if a fixed size cannot)."""
        if self.sizes is not None:
            size = tuple(self.sizes[rng.integers(len(self.sizes))])
            if len(size) != len(shape) or any(s > n for s, n in zip(size, shape, strict=True)):
                raise ValueError(f"crop size {size} does not fit an image of shape {tuple(shape)}")
            return size
        area = math.prod(shape)
        for _ in range(10):  # as torchvision's RandomResizedCrop
            target = area * rng.uniform(*self.scale)
            if len(shape) == 2:
                log_r = rng.uniform(math.log(self.ratio[0]), math.log(self.ratio[1]))
                r = math.exp(log_r)
                size = (round(math.sqrt(target * r)), round(math.sqrt(target / r)))
            else:
                side = target ** (1 / len(shape)) / (math.prod(shape) ** (1 / len(shape)))
                size = tuple(round(n * side) for n in shape)
            if all(0 < s <= n for s, n in zip(size, shape, strict=True)):
                return size
        return tuple(shape)


@dataclass(frozen=True)
class ViewConfig:
    """How the views of one sample are drawn (Sec. 3.4 and 4.3).

    Attributes:
        mode: ``"sub"``, ``"multi"`` or ``"none"``.
        global_sizes / local_sizes: how crop sizes are drawn.
        global_out / local_out: the size every global / local view is resized to.
        n_locals: local views per sample (6).
        min_iou: sub-crop's IoU threshold between the two globals (0.3).
        max_tries: attempts before giving up with an error.
        background_value / background_fraction / background_keep: the crop filter (raw
            units, HU for CT: -150 and 0.85; ``None`` disables it). ``"tissue"`` (this
            project's reading): a global crop with more than ``background_fraction`` of its
            voxels below ``background_value`` is redrawn. ``"air"`` (the released
            ``luna_preprocess.py``, inherited from Models Genesis' cube generator): a crop
            with more than ``1 - background_fraction`` of its voxels at or above the value
            is redrawn - lung- and air-dominated crops are kept (the released test reads a
            3-slice look-ahead per voxel; here each voxel counts once).
        local_placement: ``"inside"``: sub-crop locals lie inside the globals' enclosing box;
            ``"official"`` (the released code): a local's corner is uniform in the box
            widened by ``local_margin`` voxels (clipped to the image), so the window may run
            past the box; here it is shifted back inside the image rather than cut at the
            border as the released slicing does.
    """

    mode: str = "sub"
    global_sizes: CropSizes = field(
        default_factory=lambda: CropSizes(
            sizes=((64, 64, 32), (96, 96, 64), (96, 96, 96), (112, 112, 64))
        )
    )
    local_sizes: CropSizes = field(
        default_factory=lambda: CropSizes(
            sizes=((8, 8, 8), (16, 16, 16), (32, 32, 16), (32, 32, 32))
        )
    )
    global_out: tuple[int, ...] = (64, 64, 32)
    local_out: tuple[int, ...] = (16, 16, 16)
    n_locals: int = 6
    min_iou: float = 0.3
    max_tries: int = 100
    background_value: float | None = -150.0
    background_fraction: float = 0.85
    background_keep: str = "tissue"
    local_placement: str = "inside"
    local_margin: int = 3

    def __post_init__(self) -> None:
        if self.background_keep not in ("tissue", "air"):
            raise ValueError(
                f"ViewConfig: background_keep must be 'tissue' or 'air', got {self.background_keep!r}"
            )
        if self.local_placement not in ("inside", "official"):
            raise ValueError(
                "ViewConfig: local_placement must be 'inside' or 'official', got "
                f"{self.local_placement!r}"
            )
        if self.mode not in CROP_MODES:
            raise ValueError(f"ViewConfig: mode must be one of {CROP_MODES}, got {self.mode!r}")
        if len(self.global_out) != len(self.local_out):
            raise ValueError("ViewConfig: global_out and local_out need the same dimensionality")
        if not 0 <= self.min_iou < 1:
            raise ValueError(f"ViewConfig: min_iou must be in [0, 1), got {self.min_iou}")
        if self.n_locals < 0:
            raise ValueError(f"ViewConfig: n_locals must be >= 0, got {self.n_locals}")

    @property
    def spatial_dims(self) -> int:
        """2 or 3."""
        return len(self.global_out)


PRESETS = ("paper", "official")


def paper_view_config(
    spatial_dims: int, mode: str = "sub", preset: str = "paper", **overrides
) -> ViewConfig:
    """The paper's view settings (Sec. 4.3) for 3D CT or 2D X-ray, with overrides.

    ``preset="official"`` draws 3D views as the released code does (RL4M/PCRLv2
    ``luna_preprocess.py``): the crop filter keeps air- and lung-dominated crops and local
    corners range over the globals' box widened by 3 voxels (:class:`ViewConfig`)."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {PRESETS}, got {preset!r}")
    if spatial_dims == 3:
        official = {"background_keep": "air", "local_placement": "official"}
        cfg = ViewConfig(mode=mode, **(official if preset == "official" else {}))
        return replace(cfg, **overrides)
    if spatial_dims == 2:
        cfg = ViewConfig(
            mode=mode,
            global_sizes=CropSizes(scale=(0.3, 1.0)),
            local_sizes=CropSizes(scale=(0.05, 0.3)),
            global_out=(224, 224),
            local_out=(96, 96),
            background_value=None,
        )
        return replace(cfg, **overrides)
    raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")


@dataclass(frozen=True)
class ViewBoxes:
    """The crops of one sample: two globals, their bounding box (sub-crop) and the locals."""

    global1: Box
    global2: Box
    box: Box | None
    locals: tuple[Box, ...]


def _random_box(shape, size, rng, lo=None, hi=None) -> Box:
    """A box of ``size`` with its start uniform in ``[lo, hi - size]`` (default: the image)."""
    lo = lo or (0,) * len(shape)
    hi = hi or tuple(shape)
    start = tuple(
        int(rng.integers(a, max(a, b - s) + 1)) for a, b, s in zip(lo, hi, size, strict=True)
    )
    return Box(start, tuple(size))


def _is_background(image: np.ndarray | None, box: Box, cfg: ViewConfig) -> bool:
    """Whether the crop filter (:class:`ViewConfig`) rejects ``box``."""
    if image is None or cfg.background_value is None:
        return False
    # every second voxel per axis estimates the fraction well, at 1/8 (3D) of the cost
    crop = image[(..., *[slice(a, b, 2) for a, b in zip(box.start, box.stop, strict=True)])]
    below = float((crop < cfg.background_value).mean())
    if cfg.background_keep == "air":
        return 1.0 - below > 1.0 - cfg.background_fraction
    return below > cfg.background_fraction


def _filter_rule(cfg: ViewConfig) -> str:
    if cfg.background_keep == "air":
        return (
            f"at most {1 - cfg.background_fraction:.0%} of voxels at or above "
            f"{cfg.background_value}"
        )
    return f"at most {cfg.background_fraction:.0%} of voxels below {cfg.background_value}"


def _draw_global(shape, cfg, rng, image) -> Box:
    for _ in range(cfg.max_tries):
        g = _random_box(shape, cfg.global_sizes.sample(shape, rng), rng)
        if not _is_background(image, g, cfg):
            return g
    raise ValueError(
        f"no global crop with {_filter_rule(cfg)} in {cfg.max_tries} tries: the image does "
        "not have enough of what the crop filter keeps"
    )


def _max_iou(a: Sequence[int], b: Sequence[int]) -> float:
    """The largest IoU two boxes of sizes ``a`` and ``b`` can have (one inside the other)."""
    inter = math.prod(min(x, y) for x, y in zip(a, b, strict=True))
    return inter / (math.prod(a) + math.prod(b) - inter)


def _draw_overlapping(shape, g1: Box, cfg, rng, image) -> Box:
    """A second global crop with IoU >= min_iou: its size must allow that IoU with g1, and
    its centre is drawn inside g1 (then the IoU is checked)."""
    for _ in range(cfg.max_tries):
        size = cfg.global_sizes.sample(shape, rng)
        if _max_iou(g1.size, size) < cfg.min_iou:
            continue
        start = tuple(
            int(np.clip(rng.integers(a, b) - s // 2, 0, n - s))
            for a, b, s, n in zip(g1.start, g1.stop, size, shape, strict=True)
        )
        g2 = Box(start, tuple(size))
        if iou(g1, g2) >= cfg.min_iou and not _is_background(image, g2, cfg):
            return g2
    raise ValueError(
        f"no pair of global crops with IoU >= {cfg.min_iou} in {cfg.max_tries} tries "
        f"(image shape {tuple(shape)}); lower min_iou or use closer crop sizes"
    )


def sample_boxes(
    shape: Sequence[int],
    cfg: ViewConfig,
    rng: np.random.Generator,
    image: np.ndarray | None = None,
) -> ViewBoxes:
    """Draw the crops of one sample (Sec. 3.4).

    Args:
        shape: spatial shape of the image, e.g. ``(X, Y, Z)``.
        cfg: the view settings.
        rng: the random generator (seeded per sample for determinism).
        image: the raw image ``(*shape)`` or ``(C, *shape)``, for the background filter.

    Returns:
        :class:`ViewBoxes`; for sub-crop every local lies inside ``box`` and
        ``iou(global1, global2) >= cfg.min_iou``.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != cfg.spatial_dims:
        raise ValueError(f"image has {len(shape)} spatial dims, views are {cfg.spatial_dims}D")
    g1 = _draw_global(shape, cfg, rng, image)
    if cfg.mode == "sub":
        g2 = _draw_overlapping(shape, g1, cfg, rng, image)
        box = enclosing_box(g1, g2)
        local_shape, lo, hi = box.size, box.start, box.stop
    else:
        g2 = _draw_global(shape, cfg, rng, image)
        box = None
        local_shape, lo, hi = shape, None, None
    locals_ = ()
    if cfg.mode == "sub" and cfg.local_placement == "official":
        m = cfg.local_margin
        lo = tuple(max(a - m, 0) for a in box.start)
        hi = tuple(min(b + m, n) for b, n in zip(box.stop, shape, strict=True))
        locals_ = tuple(
            _official_local(shape, cfg.local_sizes.sample(local_shape, rng), lo, hi, rng)
            for _ in range(cfg.n_locals)
        )
    elif cfg.mode != "none":
        locals_ = tuple(
            _random_box(
                shape,
                tuple(
                    min(s, n)
                    for s, n in zip(
                        cfg.local_sizes.sample(local_shape, rng), local_shape, strict=True
                    )
                ),
                rng,
                lo,
                hi,
            )
            for _ in range(cfg.n_locals)
        )
    return ViewBoxes(g1, g2, box, locals_)


def _official_local(shape, size, lo, hi, rng) -> Box:
    """A local box whose corner is uniform in ``[lo, hi)`` (the released code's placement),
    shifted back inside the image where the window would leave it."""
    size = tuple(min(s, n) for s, n in zip(size, shape, strict=True))
    start = tuple(
        min(int(rng.integers(a, max(a + 1, b))), n - s)
        for a, b, s, n in zip(lo, hi, size, shape, strict=True)
    )
    return Box(start, size)


def crop_resize(
    image: np.ndarray | torch.Tensor, box: Box, out_size: Sequence[int]
) -> torch.Tensor:
    """Cut ``box`` out of ``image`` ``(C, *S)`` and resize it to ``(C, *out_size)``.

    (Bi/tri)linear interpolation, ``align_corners=False``; a crop already of ``out_size`` is
    returned as a float32 copy without interpolation.
    """
    x = torch.as_tensor(image[(..., *box.slices)], dtype=torch.float32)
    if x.dim() != len(out_size) + 1:
        raise ValueError(
            f"crop_resize expects (C, *S) with {len(out_size)} spatial dims, got {tuple(x.shape)}"
        )
    if tuple(x.shape[1:]) == tuple(out_size):
        return x.clone()
    mode = "bilinear" if len(out_size) == 2 else "trilinear"
    return F.interpolate(x[None], size=tuple(out_size), mode=mode, align_corners=False)[0]
