"""Training inputs of the baselines, built on PCRLv2's view generator so every method sees
crops drawn the same way (sizes, background filter, global augmentation) and differs only in
what it does with them.

- Siamese / contrastive methods (SimSiam, C2L) and 3D-CPC read the generator's ``global1`` /
  ``global2`` directly (``paper_view_generator(dims, "none")``).
- :class:`GenesisInputs`: Models Genesis's corrupted input and clean target.
- :class:`PCRLv1Inputs`: two views, each corrupted, with their clean targets and the
  corruption flags the decoder is conditioned on.
- :class:`RubikInputs`: a volume with Rubik's-cube layer rotations and its original.
- :class:`VisualWordInputs` with :func:`discover_visual_words`: TransVW's visual words.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F

from pcrl_lib.augment import corrupt
from pcrl_lib.data.location import box_location, normalized_frame
from pcrl_lib.methods.corruptions import CORRUPTIONS, GenesisConfig, genesis_pair, one_corruption
from pcrl_lib.pipeline import Intensity, ViewGenerator, paper_view_generator
from pcrl_lib.views import Box, CropSizes, crop_resize, sample_boxes


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream])


@dataclass(frozen=True)
class GenesisInputs:
    """``{"input", "target"}``: a clean crop (the base generator's ``target1``) corrupted by
    :func:`genesis_pair`."""

    base: ViewGenerator = field(default_factory=lambda: paper_view_generator(3, "none"))
    genesis: GenesisConfig = field(default_factory=GenesisConfig)

    def __call__(self, image: np.ndarray, seed: int) -> dict[str, torch.Tensor]:
        clean = self.base(image, seed)["target1"].numpy()
        x, y, _ = genesis_pair(clean, _rng(seed, 1), self.genesis)
        return {"input": torch.from_numpy(x), "target": torch.from_numpy(y)}


@dataclass(frozen=True)
class PCRLv1Inputs:
    """``{"global1", "global2", "target1", "target2", "transform1", "transform2"}``: two
    clean views, each corrupted by the Models Genesis corruptions (flips are part of the
    base augmentation), with ``(4,)`` flags of the corruptions applied (:data:`CORRUPTIONS`
    order) for PCRLv1's transformation-conditioned decoder."""

    base: ViewGenerator = field(default_factory=lambda: paper_view_generator(3, "none"))
    genesis: GenesisConfig = field(default_factory=lambda: GenesisConfig(flip_rate=0.0))

    def __call__(self, image: np.ndarray, seed: int) -> dict[str, torch.Tensor]:
        views = self.base(image, seed)
        out = {}
        for i in (1, 2):
            target = views[f"target{i}"].numpy()
            x, _, applied = genesis_pair(target, _rng(seed, i), self.genesis)
            out[f"global{i}"] = torch.from_numpy(x)
            out[f"target{i}"] = views[f"target{i}"]
            out[f"transform{i}"] = torch.tensor([float(applied[k]) for k in CORRUPTIONS])
        return out


def rubik_rotate(x: np.ndarray, axis: int, layer: int, turns: int) -> np.ndarray:
    """Turn one layer (half) of a 2x2x2 grid of sub-cubes of ``x (C, X, Y, Z)`` about
    spatial ``axis`` by ``turns`` quarter turns, as a Rubik's cube face turns. A quarter turn
    needs the two other axes equal; 180 degrees always works."""
    out = x.copy()
    n = x.shape[1 + axis]
    sl = [slice(None)] * 4
    sl[1 + axis] = slice(0, n // 2) if layer == 0 else slice(n // 2, n)
    plane = tuple(1 + a for a in range(3) if a != axis)
    out[tuple(sl)] = np.rot90(x[tuple(sl)], k=turns, axes=plane)
    return out


@dataclass(frozen=True)
class RubikInputs:
    """Rubik's cube++ inputs (Tao et al., MICCAI 2020): ``{"input", "target"}`` where the
    input is the clean crop after ``1..max_turns`` random layer turns of its 2x2x2 sub-cubes
    (quarter turns where the layer is square, half turns otherwise)."""

    base: ViewGenerator = field(default_factory=lambda: paper_view_generator(3, "none"))
    max_turns: int = 3

    def __call__(self, image: np.ndarray, seed: int) -> dict[str, torch.Tensor]:
        clean = self.base(image, seed)["target1"].numpy()
        x = clean
        rng = _rng(seed, 3)
        for _ in range(int(rng.integers(1, self.max_turns + 1))):
            axis, layer = int(rng.integers(3)), int(rng.integers(2))
            others = [x.shape[1 + a] for a in range(3) if a != axis]
            turns = int(rng.integers(1, 4)) if others[0] == others[1] else 2
            x = rubik_rotate(x, axis, layer, turns)
        return {
            "input": torch.from_numpy(np.ascontiguousarray(x)),
            "target": torch.from_numpy(clean),
        }


def _thumbnail(image: np.ndarray, intensity: Intensity, size: int = 16) -> np.ndarray:
    t = intensity(torch.as_tensor(image, dtype=torch.float32))[None]
    mode = "trilinear" if t.dim() == 5 else "bilinear"
    return (
        F.interpolate(t, size=(size,) * (t.dim() - 2), mode=mode, align_corners=False)
        .flatten()
        .numpy()
    )


def discover_visual_words(
    images: Sequence[np.ndarray],
    n_words: int,
    k_neighbours: int,
    word_size: Sequence[int],
    seed: int = 0,
    embed: Callable[[np.ndarray], np.ndarray] | None = None,
    intensity: Intensity | None = None,
    background: float | None = -150.0,
) -> list[tuple[int, tuple[int, ...], int]]:
    """TransVW's self-discovery of visual words (Haghighi et al., IEEE TMI 2021; public code:
    fhaghighi/TransVW): pick a reference patient, find its ``k_neighbours`` most similar
    patients by an embedding, draw ``n_words`` coordinates in the reference (not background)
    and take the crop at each coordinate in the reference and in every neighbour: the crops
    of one coordinate are instances of one visual word (class).

    Args:
        images: raw images ``(C, *S)`` on one grid (same size: patients roughly aligned).
        embed: image -> vector; default a 16^D thumbnail of the windowed image (TransVW
            trains an auto-encoder for this; pass its encoder for the faithful variant).

    Returns:
        ``(image_index, centre, word)`` triples, ``word`` in ``range(n_words)``.
    """
    if len(images) < 2 or k_neighbours < 1:
        raise ValueError("visual words need at least 2 images and 1 neighbour")
    intensity = intensity or Intensity()
    embed = embed or (lambda im: _thumbnail(im, intensity))
    vectors = np.stack([embed(np.asarray(im)) for im in images])
    rng = np.random.default_rng(seed)
    ref = int(rng.integers(len(images)))
    dist = np.linalg.norm(vectors - vectors[ref], axis=1)
    group = [int(i) for i in np.argsort(dist)[: k_neighbours + 1]]  # the reference first
    shape = np.asarray(images[ref].shape[1:])
    half = np.asarray(word_size) // 2
    centres: list[tuple[int, ...]] = []
    for _ in range(100 * n_words):
        if len(centres) == n_words:
            break
        c = tuple(int(rng.integers(h, max(h + 1, n - h))) for h, n in zip(half, shape, strict=True))
        box = tuple(slice(a - h, a + h) for a, h in zip(c, half, strict=True))
        if (
            background is not None
            and (np.asarray(images[ref])[(0, *box)] < background).mean() > 0.85
        ):
            continue
        centres.append(c)
    if len(centres) < n_words:
        raise ValueError(f"found only {len(centres)} non-background word positions of {n_words}")
    return [(i, c, w) for w, c in enumerate(centres) for i in group]


@dataclass(frozen=True)
class VisualWordInputs:
    """TransVW samples from ``{"image", "centre", "word"}`` items: ``{"input", "target",
    "label"}``: the word's crop (resized to ``out_size``, flipped at random) corrupted by
    exactly one Models Genesis corruption; ``label`` its word index."""

    word_size: tuple[int, ...] = (64, 64, 32)
    out_size: tuple[int, ...] = (64, 64, 32)
    intensity: Intensity = field(default_factory=Intensity)
    shuffle_blocks: int = 10_000

    def __call__(self, item: dict, seed: int) -> dict[str, torch.Tensor]:
        image, centre = np.asarray(item["image"]), item["centre"]
        box = tuple(
            slice(max(c - s // 2, 0), c - s // 2 + s)
            for c, s in zip(centre, self.word_size, strict=True)
        )
        crop = self.intensity(torch.as_tensor(image[(slice(None), *box)], dtype=torch.float32))[
            None
        ]
        mode = "trilinear" if crop.dim() == 5 else "bilinear"
        clean = F.interpolate(crop, size=self.out_size, mode=mode, align_corners=False)[0].numpy()
        rng = _rng(seed, 4)
        for axis in range(1, clean.ndim):
            if rng.random() < 0.5:
                clean = np.flip(clean, axis)
        clean = np.ascontiguousarray(clean)
        x, _ = one_corruption(clean, rng, self.shuffle_blocks)
        return {
            "input": torch.from_numpy(x),
            "target": torch.from_numpy(clean),
            "label": torch.tensor(item["word"]),
        }


@dataclass(frozen=True)
class PGLInputs:
    """PGL's two views with the transformations that made them (:mod:`pcrl_lib.methods.pgl`):
    ``{"global1", "global2"}`` ``(C, *out)``, ``{"box1", "box2"}`` ``(2, d)`` (crop start
    and size in image voxels) and ``{"flip1", "flip2"}`` ``(d,)`` (1: flipped along that
    axis).

    The crops are the base generator's sub-crop pair (sizes from its global crop sizes, IoU
    at least its ``min_iou``, so they always share a region), each resized to
    ``global_out`` - different positions and scales; then each view is flipped along each
    axis with probability ``flip_p``, mapped to [0, 1] and given the appearance
    augmentations of the local views (blur, noise, gamma: no further geometry, so the boxes
    and flips say exactly where every voxel came from)."""

    base: ViewGenerator = field(default_factory=lambda: paper_view_generator(3, "none"))
    flip_p: float = 0.5

    def __call__(self, image: np.ndarray, seed: int) -> dict[str, torch.Tensor]:
        views = replace(self.base.views, mode="sub", n_locals=0)
        rng = _rng(seed, 5)
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        img = torch.as_tensor(image)
        boxes = sample_boxes(img.shape[1:], views, rng, image=img.numpy())
        out, crops = {}, []
        for i, box in enumerate((boxes.global1, boxes.global2), start=1):
            x = self.base.intensity(crop_resize(img.numpy(), box, views.global_out))
            flips = rng.random(views.spatial_dims) < self.flip_p
            axes = [a + 1 for a in range(views.spatial_dims) if flips[a]]
            crops.append(torch.flip(x, axes) if axes else x)
            out[f"box{i}"] = torch.tensor([box.start, box.size], dtype=torch.float32)
            out[f"flip{i}"] = torch.as_tensor(flips, dtype=torch.float32)
        augmented = corrupt(
            torch.stack(crops), self.base.augment, self.base.augment.local_view_ops, gen
        )
        out["global1"], out["global2"] = augmented[0], augmented[1]
        return out


@dataclass(frozen=True)
class DrasCLRInputs:
    """DrasCLR's samples (:mod:`pcrl_lib.methods.drasclr`) from an image ``(C, *S)`` or an
    item ``{"image", "frame"}`` (:func:`pcrl_lib.data.datasets.located_images`; without a
    frame, the image's own extent: :func:`pcrl_lib.data.location.normalized_frame`):

    ``{"patch1", "patch2"}`` ``(C, *P)``: one patch of ``patch`` voxels (default: the base
    generator's ``global_out``; cut, not resized - locations stay exact), two draws of the
    appearance augmentations; ``"loc"`` ``(3,)`` its centre's location; ``"neighbours"``
    ``(k, C, *P)`` and ``"neighbour_locs"`` ``(k, 3)``: the patch moved by ``shift`` of its
    size along a random axis and direction, ``k`` times (nearest positions on a
    half-overlapping lattice, as the released code's nearest atlas patches), each
    augmented once. The anchor obeys the base generator's background filter."""

    base: ViewGenerator = field(default_factory=lambda: paper_view_generator(3, "none"))
    patch: tuple[int, ...] | None = None
    n_neighbours: int = 2
    shift: float = 0.5

    def __call__(self, item, seed: int) -> dict[str, torch.Tensor]:
        image, frame = (
            (item["image"], item.get("frame")) if isinstance(item, dict) else (item, None)
        )
        image = np.asarray(image)
        shape = image.shape[1:]
        frame = normalized_frame(shape) if frame is None else np.asarray(frame)
        size = tuple(
            min(p, n) for p, n in zip(self.patch or self.base.views.global_out, shape, strict=True)
        )
        views = replace(
            self.base.views, mode="none", n_locals=0, global_sizes=CropSizes(sizes=(size,))
        )
        rng = _rng(seed, 6)
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        anchor = sample_boxes(shape, views, rng, image=image).global1
        boxes = [anchor]
        for _ in range(self.n_neighbours):
            axis, sign = int(rng.integers(len(shape))), int(rng.choice((-1, 1)))
            start = list(anchor.start)
            step = max(1, round(self.shift * size[axis]))
            start[axis] = int(np.clip(start[axis] + sign * step, 0, shape[axis] - size[axis]))
            boxes.append(Box(tuple(start), size))
        crops = torch.stack(
            [
                self.base.intensity(
                    torch.as_tensor(image[(slice(None), *b.slices)], dtype=torch.float32)
                )
                for b in boxes
            ]
        )
        ops = self.base.augment.local_view_ops
        first = corrupt(crops.clone(), self.base.augment, ops, gen)
        second = corrupt(crops[:1].clone(), self.base.augment, ops, gen)
        locs = torch.tensor(
            np.stack([box_location(frame, b.start, b.size) for b in boxes]), dtype=torch.float32
        )
        return {
            "patch1": first[0],
            "patch2": second[0],
            "loc": locs[0],
            "neighbours": first[1:],
            "neighbour_locs": locs[1:],
        }
