"""The Models Genesis corruptions, written once for 2D and 3D (Zhou et al., MICCAI 2019 /
MedIA 2021; public code: MrGiovanni/ModelsGenesis, ``utils.py``), shared by Models Genesis,
TransVW and PCRLv1.

Images are ``(C, *S)`` arrays in [0, 1]; every function draws from the given
``numpy.random.Generator`` and returns a new array. :func:`genesis_pair` composes them with
the original probabilities (flip 0.4 a time, local shuffling 0.5, non-linear intensity 0.9,
painting 0.9 of which in-painting 0.2 and out-painting 0.8); the restoration target is the
(flipped) original.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CORRUPTIONS = ("nonlinear", "local_shuffle", "inpaint", "outpaint")


@dataclass(frozen=True)
class GenesisConfig:
    """Probabilities of the corruptions (Models Genesis's defaults)."""

    flip_rate: float = 0.4
    local_rate: float = 0.5
    nonlinear_rate: float = 0.9
    paint_rate: float = 0.9
    inpaint_rate: float = 0.2  # of the painted samples; the rest is out-painted
    shuffle_blocks: int = 10_000


def bezier_intensity(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Non-linear intensity: a monotone cubic Bezier curve through (0, 0), two random control
    points and (1, 1) maps every value; half of the time the curve is flipped (``y`` sorted
    against ``x``: increasing; else ``y`` as drawn, which may invert contrast)."""
    p = np.array([[0.0, 0.0], rng.random(2), rng.random(2), [1.0, 1.0]])
    t = np.linspace(0.0, 1.0, 1000)[:, None]
    curve = (
        (1 - t) ** 3 * p[0] + 3 * (1 - t) ** 2 * t * p[1] + 3 * (1 - t) * t**2 * p[2] + t**3 * p[3]
    )
    xs, ys = curve[:, 0], curve[:, 1]
    order = np.argsort(xs)
    xs = xs[order]
    ys = np.sort(ys) if rng.random() < 0.5 else ys[order][::-1]
    return np.interp(x, xs, ys).astype(x.dtype)


def _block(shape, rng, lo_div, hi_div, margin=0):
    sizes = [int(rng.integers(max(n // lo_div, 1), max(n // hi_div, 1) + 1)) for n in shape]
    starts = [
        int(rng.integers(margin, max(n - s - margin, margin) + 1))
        for n, s in zip(shape, sizes, strict=True)
    ]
    return tuple(slice(a, a + s) for a, s in zip(starts, sizes, strict=True))


def local_shuffle(x: np.ndarray, rng: np.random.Generator, n_blocks: int = 10_000) -> np.ndarray:
    """Local pixel shuffling: ``n_blocks`` small windows (sides 1 to 1/10 of each axis), each
    with its voxels permuted (read from the original image, so windows may overlap).

    Vectorised over the windows of equal size (at most a few hundred sizes): one gather and
    one scatter per size instead of a Python step per window - the official loop, 10,000
    windows per image, took about 100 ms per sample. Where windows overlap, the one written
    last wins, as in the loop; only the order of writing differs (by size, then draw)."""
    out, spatial = x.copy(), x.shape[1:]
    sizes = np.stack([rng.integers(1, max(n // 10, 1) + 1, n_blocks) for n in spatial], axis=1)
    starts = np.stack([rng.integers(0, n - sizes[:, i] + 1) for i, n in enumerate(spatial)], axis=1)
    kinds, which = np.unique(sizes, axis=0, return_inverse=True)
    for g, size in enumerate(kinds):
        chosen = np.flatnonzero(which.ravel() == g)
        grids = np.meshgrid(*[np.arange(s) for s in size], indexing="ij")
        coords = [starts[chosen, i, None] + grid.ravel()[None] for i, grid in enumerate(grids)]
        perm = np.argsort(rng.random(coords[0].shape), axis=1)
        source = [np.take_along_axis(c, perm, axis=1) for c in coords]
        out[(slice(None), *coords)] = x[(slice(None), *source)]
    return out


def inpaint(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """In-painting: up to five boxes (1/6 to 1/3 of each axis; each further one with
    probability 0.95) filled with uniform noise."""
    out = x.copy()
    for k in range(5):
        if k and rng.random() >= 0.95:
            break
        box = (slice(None), *_block(x.shape[1:], rng, 6, 3, margin=3))
        out[box] = rng.random(out[box].shape).astype(x.dtype)
    return out


def outpaint(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Out-painting: the image replaced by uniform noise except one inner box of 3/7-4/7 of
    each axis (and up to four more, each with probability 0.95) keeping the original."""
    out = rng.random(x.shape).astype(x.dtype)
    for k in range(5):
        if k and rng.random() >= 0.95:
            break
        spatial = x.shape[1:]
        sizes = [n - int(rng.integers(3 * n // 7, 4 * n // 7 + 1)) for n in spatial]
        starts = [
            int(rng.integers(min(3, n - s), max(n - s - 3, min(3, n - s)) + 1))
            for n, s in zip(spatial, sizes, strict=True)
        ]
        box = (slice(None), *(slice(a, a + s) for a, s in zip(starts, sizes, strict=True)))
        out[box] = x[box]
    return out


def random_flips(
    x: np.ndarray, y: np.ndarray, rng: np.random.Generator, rate: float
) -> tuple[np.ndarray, np.ndarray]:
    """Flip input and target together along a random spatial axis, again with probability
    ``rate`` each time, at most three times."""
    for _ in range(3):
        if rng.random() >= rate:
            break
        axis = 1 + int(rng.integers(x.ndim - 1))
        x, y = np.flip(x, axis), np.flip(y, axis)
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


def genesis_pair(
    image: np.ndarray, rng: np.random.Generator, cfg: GenesisConfig = GenesisConfig()
) -> tuple[np.ndarray, np.ndarray, dict[str, bool]]:
    """Models Genesis's ``generate_pair`` for one image: ``(input, target, applied)``."""
    x, y = random_flips(image, image, rng, cfg.flip_rate)
    applied = dict.fromkeys(CORRUPTIONS, False)
    if rng.random() < cfg.local_rate:
        x, applied["local_shuffle"] = local_shuffle(x, rng, cfg.shuffle_blocks), True
    if rng.random() < cfg.nonlinear_rate:
        x, applied["nonlinear"] = bezier_intensity(x, rng), True
    if rng.random() < cfg.paint_rate:
        if rng.random() < cfg.inpaint_rate:
            x, applied["inpaint"] = inpaint(x, rng), True
        else:
            x, applied["outpaint"] = outpaint(x, rng), True
    return x, y, applied


def one_corruption(
    image: np.ndarray, rng: np.random.Generator, shuffle_blocks: int = 10_000
) -> tuple[np.ndarray, str]:
    """Exactly one Models Genesis corruption, chosen uniformly (TransVW's restoration input)."""
    name = CORRUPTIONS[int(rng.integers(len(CORRUPTIONS)))]
    fn = {"nonlinear": bezier_intensity, "inpaint": inpaint, "outpaint": outpaint}.get(name)
    return (fn(image, rng) if fn else local_shuffle(image, rng, shuffle_blocks)), name
