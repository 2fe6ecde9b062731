"""Global and local augmentations, batched over views and written once for 2D and 3D.

PCRLv2 (Fig. 2, Sec. 4.3) augments each crop twice: a *global* (geometric) augmentation
whose result is the restoration target, then a *local* (appearance) corruption whose result
is the network's input. The settings follow the official code (RL4M/PCRLv2, ``data.py``),
which uses torchio's defaults:

========  =====================================  ==========================================
kind      3D (torchio default it mirrors)          2D
========  =====================================  ==========================================
global    flip (``RandomFlip``: axis 0, p 0.5),   flip (horizontal, p 0.5), rotation
          affine (``RandomAffine``: +-10 deg,     (+-10 deg); the random resized crop is the
          scale 0.9-1.1, pad with the minimum)    crop itself (:mod:`pcrl_lib.views`)
local     blur (``RandomBlur``: std 0-2 voxels),  grayscale (p 0.2), blur (p 0.5, std
          noise (``RandomNoise``: std 0-0.25),    0.1-2 px), cutout (p 0.5, 2-20% of the
          gamma (``RandomGamma``: log 0.3),       area)
          swap (``RandomSwap``: 8x4x4, 100x on
          a 64x64x32 view; scaled to the view)
========  =====================================  ==========================================

Every op here takes a batch of views ``(N, C, *S)`` and a ``torch.Generator`` and draws its
parameters per view, so one call augments all local views of a sample at once; that is what
makes the input pipeline fast (``benchmarks/views_throughput.py``). :func:`torchio_pipeline`
builds the same augmentations from torchio itself - the official pipeline, for comparison
and for users who prefer it (``ViewGenerator(backend="torchio")``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from pcrl_lib.views import Box


@dataclass(frozen=True)
class AugmentConfig:
    """Parameters of the global and local augmentations (defaults: the table above).

    ``local_ops`` lists the corruption ops applied to the global views' inputs;
    ``local_view_ops`` those applied to the local views (the official code leaves out swap).
    ``swap_iterations`` are the swaps of a view of ``swap_reference`` voxels (the official
    64x64x32 globals); a view of another size gets as many swaps per voxel
    (:meth:`swaps_for`), so the fraction of the view displaced stays the released code's
    (~17 %; 100 swaps on a 32^3 view would displace about half of it). ``None``: always
    ``swap_iterations``.
    """

    flip_p: float = 0.5
    flip_axes: tuple[int, ...] = (0,)
    degrees: float = 10.0
    scales: tuple[float, float] = (0.9, 1.1)
    blur_std: tuple[float, float] = (0.0, 2.0)
    blur_p: float = 1.0
    noise_std: tuple[float, float] = (0.0, 0.25)
    log_gamma: tuple[float, float] = (-0.3, 0.3)
    swap_patch: tuple[int, ...] = (8, 4, 4)
    swap_iterations: int = 100
    swap_reference: tuple[int, ...] | None = (64, 64, 32)
    grayscale_p: float = 0.2
    cutout_p: float = 0.5
    cutout_area: tuple[float, float] = (0.02, 0.2)
    local_ops: tuple[str, ...] = ("blur", "noise", "gamma", "swap")
    local_view_ops: tuple[str, ...] = ("blur", "noise", "gamma")

    def swaps_for(self, spatial: tuple[int, ...]) -> int:
        """Swaps for a view of ``spatial`` size: ``swap_iterations * prod(spatial) /
        prod(swap_reference)`` rounded, at least 1 (e.g. 100 at 64x64x32, 25 at 32^3)."""
        if self.swap_reference is None:
            return self.swap_iterations
        ratio = math.prod(spatial) / math.prod(self.swap_reference)
        return max(1, round(self.swap_iterations * ratio))


def paper_augment_config(spatial_dims: int) -> AugmentConfig:
    """The paper's augmentations for 3D CT or 2D X-ray."""
    if spatial_dims == 3:
        return AugmentConfig()
    if spatial_dims == 2:
        return AugmentConfig(
            flip_axes=(1,),
            scales=(1.0, 1.0),
            blur_std=(0.1, 2.0),
            blur_p=0.5,
            local_ops=("grayscale", "blur", "cutout"),
            local_view_ops=("grayscale", "blur", "cutout"),
        )
    raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator | None) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def _rotation(angles: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``(N, d, d)`` from ``(N,)`` angles (2D) or ``(N, 3)`` Euler angles."""
    if angles.dim() == 1:
        c, s = angles.cos(), angles.sin()
        return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
    rot = torch.eye(3).expand(len(angles), 3, 3)
    for axis in range(3):
        c, s = angles[:, axis].cos(), angles[:, axis].sin()
        i, j = [k for k in range(3) if k != axis]
        m = torch.eye(3).repeat(len(angles), 1, 1)
        m[:, i, i], m[:, i, j], m[:, j, i], m[:, j, j] = c, -s, s, c
        rot = rot @ m
    return rot


def random_geometry(
    n: int, spatial_dims: int, cfg: AugmentConfig | None, gen: torch.Generator | None = None
) -> torch.Tensor:
    """Per-view linear maps ``(N, d, d)`` (output offset -> input offset, voxel units, tensor
    axis order): a rotation of up to ``cfg.degrees`` about every axis, a per-axis scale in
    ``cfg.scales`` and a flip of each of ``cfg.flip_axes`` with probability ``cfg.flip_p``.
    ``cfg=None`` gives identities."""
    d = spatial_dims
    if cfg is None:
        return torch.eye(d).repeat(n, 1, 1)
    rad = math.radians(cfg.degrees)
    angles = _uniform(n * (1 if d == 2 else 3), -rad, rad, gen).reshape(n, -1).squeeze(1)
    scale = _uniform(n * d, *cfg.scales, gen).reshape(n, d)
    flips = torch.ones(n, d)
    for axis in cfg.flip_axes:
        flips[:, axis] = torch.where(torch.rand(n, generator=gen) < cfg.flip_p, -1.0, 1.0)
    return _rotation(angles) / scale[:, None, :] * flips[:, None, :]


def resample_views(
    image: torch.Tensor,
    boxes: list[Box],
    out_size: tuple[int, ...],
    cfg: AugmentConfig | None = None,
    gen: torch.Generator | None = None,
) -> torch.Tensor:
    """Cut each box out of ``image``, resize it to ``out_size`` and apply the global
    augmentation (flip, affine) - all in one (bi/tri)linear resampling per view.

    For a box with continuous centre ``c`` and half-size ``h`` (voxels) and a view's random
    linear map ``M`` (:func:`random_geometry`), the output point ``u`` in ``[-1, 1]^d`` reads
    the image at ``c + M (u * h)``: without augmentation this equals cropping then
    ``F.interpolate(..., align_corners=False)``; with it, the view is rotated rigidly in
    voxel space about the box centre and reads real anatomy beyond the box where there is
    some (``padding_mode="border"`` only past the image's edge).

    Args:
        image: ``(C, *S)``.
        boxes: N crops of ``image``.
        out_size: spatial size of every view.
        cfg: the global augmentation, or ``None`` for plain crop-and-resize.
        gen: random generator.

    Returns:
        ``(N, C, *out_size)`` float32.
    """
    d = image.dim() - 1
    out_size = tuple(int(s) for s in out_size)
    if len(out_size) != d or any(len(b.size) != d for b in boxes):
        raise ValueError(f"image {tuple(image.shape)}: boxes and out_size need {d} spatial axes")
    n = len(boxes)
    mats = random_geometry(n, d, cfg, gen)
    half = torch.tensor([b.size for b in boxes], dtype=torch.float32) / 2
    centre = torch.tensor([b.start for b in boxes], dtype=torch.float32) + half
    lin = mats * half[:, None, :]  # (N, d, d): output [-1, 1] -> voxel offset from centre
    # Read from the region each view can reach (+ 2 voxels), not from the whole image.
    reach = lin.abs().sum(2) + 2
    lo = (centre - reach).floor().clamp_min(0).long()
    hi = torch.minimum((centre + reach).ceil().long(), torch.tensor(image.shape[1:]))
    if d == 3 and math.prod(out_size) <= 32**3:
        # small views (the locals): one batched 3D grid_sample from their common region
        box = tuple(
            slice(a, b) for a, b in zip(lo.amin(0).tolist(), hi.amax(0).tolist(), strict=True)
        )
        region = image[(slice(None), *box)].float()
        return _sample_affine_batched(region, lin, centre - lo.amin(0), out_size)
    views = []
    for i in range(n):
        box = tuple(slice(a, b) for a, b in zip(lo[i].tolist(), hi[i].tolist(), strict=True))
        region = image[(slice(None), *box)].float()
        sample = _sample_affine_2d if d == 2 else _sample_affine_3d
        views.append(sample(region, lin[i], centre[i] - lo[i], out_size))
    return torch.stack(views)


def _sample_affine_batched(
    region: torch.Tensor, lin: torch.Tensor, centre: torch.Tensor, out_size: tuple[int, ...]
) -> torch.Tensor:
    """N views at once with one 3D ``grid_sample``: ``(N, C, *out_size)``; view ``i`` reads
    ``region`` at ``centre[i] + lin[i] u``."""
    n = len(lin)
    u = torch.stack(torch.meshgrid(*[_unit_axis(k) for k in out_size], indexing="ij"), -1)
    size = torch.tensor(region.shape[1:], dtype=torch.float32)
    p = centre[:, None, None, None, :] + torch.einsum("xyzj,nij->nxyzi", u, lin)
    grid = (2 * p / size - 1).flip(-1).reshape(1, n * out_size[0], *out_size[1:], 3)
    out = F.grid_sample(
        region[None], grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    return out.reshape(region.shape[0], n, *out_size).transpose(0, 1).contiguous()


def _unit_axis(n: int) -> torch.Tensor:
    """Voxel centres of an n-voxel axis in [-1, 1] (``align_corners=False``)."""
    return (2 * torch.arange(n, dtype=torch.float32) + 1) / n - 1


def _sample_affine_2d(
    region: torch.Tensor, lin: torch.Tensor, centre: torch.Tensor, out_size: tuple[int, ...]
) -> torch.Tensor:
    """``out(u) = region(centre + lin u)`` for ``u`` on the output grid; ``(C, *out_size)``.

    Continuous voxel coordinates: the image spans ``[0, N]``, voxel ``i`` is centred at
    ``i + 0.5`` (``align_corners=False``)."""
    ux, uy = _unit_axis(out_size[0]), _unit_axis(out_size[1])
    size = torch.tensor(region.shape[1:], dtype=torch.float32)
    p = centre + ux[:, None, None] * lin[:, 0] + uy[None, :, None] * lin[:, 1]  # (X, Y, 2)
    grid = (2 * p / size - 1).flip(-1)[None]  # grid order (width, height)
    out = F.grid_sample(
        region[None], grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    return out[0]


def _sample_affine_3d(
    region: torch.Tensor, lin: torch.Tensor, centre: torch.Tensor, out_size: tuple[int, ...]
) -> torch.Tensor:
    """3D version of :func:`_sample_affine_2d`, in two vectorised 2D passes.

    ``lin = P Q`` with ``Q`` changing only z (``r_z = g u_x + h u_y + k u_z``) and ``P``
    changing only x, y (as affine functions of ``u_x, u_y, r_z``). Pass 1 resamples every
    needed input z-slice in-plane at ``P`` (exact in z); pass 2 interpolates along z at
    ``r_z``. The result equals trilinear sampling at ``centre + lin u`` up to the order of the
    linear interpolations, and runs about 3x faster on a CPU than 3D ``grid_sample``.
    """
    g, h, k = lin[2].tolist()
    if abs(k) < 1e-3:  # no such factorisation: fall back to 3D grid_sample
        u = torch.stack(torch.meshgrid(*[_unit_axis(n) for n in out_size], indexing="ij"), -1)
        size = torch.tensor(region.shape[1:], dtype=torch.float32)
        grid = (2 * (centre + u @ lin.T) / size - 1).flip(-1)[None]
        out = F.grid_sample(
            region[None], grid, mode="bilinear", padding_mode="border", align_corners=False
        )
        return out[0]
    e, f = float(lin[0, 2]) / k, float(lin[1, 2]) / k
    a_, b_ = float(lin[0, 0]) - e * g, float(lin[0, 1]) - e * h
    c_, d_ = float(lin[1, 0]) - f * g, float(lin[1, 1]) - f * h
    cx, cy, cz = centre.tolist()
    X, Y, Z = region.shape[1:]
    ux, uy, uz = (_unit_axis(n) for n in out_size)
    # continuous input z each output voxel reads: rz_xy + k u_z (extremes at the corners)
    rz_xy = cz + g * ux[:, None] + h * uy[None, :]
    corners = [
        float(rz_xy[i, j]) + k * float(uz[m]) for i in (0, -1) for j in (0, -1) for m in (0, -1)
    ]
    j0 = max(0, int(math.floor(min(corners) - 0.5)))
    j1 = max(min(Z, int(math.floor(max(corners) + 0.5)) + 1), j0 + 1)
    zc = torch.arange(j0, j1, dtype=torch.float32) + 0.5 - cz  # slice centres - cz
    # pass 1: every needed z-slice, sampled in-plane on the output (x, y) grid; grid_sample
    # wants (width, height) = (y, x), normalised by the region's size
    base = torch.stack(
        [
            (2 / Y) * (cy + c_ * ux[:, None] + d_ * uy[None, :]) - 1,
            (2 / X) * (cx + a_ * ux[:, None] + b_ * uy[None, :]) - 1,
        ],
        dim=-1,
    )  # (Xo, Yo, 2)
    step = torch.tensor([2 * f / Y, 2 * e / X])
    grid1 = base[None] + (zc[:, None] * step)[:, None, None, :]  # (J, Xo, Yo, 2)
    slices = region[..., j0:j1].permute(3, 0, 1, 2)  # (J, C, X, Y)
    tmp = F.grid_sample(slices, grid1, mode="bilinear", padding_mode="border", align_corners=False)
    # pass 2: along z, per output x: image (Yo, J), read at (u_y, r_z)
    scale = 2 / (j1 - j0)
    grid2 = torch.empty(len(ux), len(uy), len(uz), 2)
    grid2[..., 0] = (scale * (rz_xy - j0) - 1)[:, :, None] + (scale * k) * uz
    grid2[..., 1] = uy[None, :, None]
    out = F.grid_sample(
        tmp.permute(2, 1, 3, 0), grid2, mode="bilinear", padding_mode="border", align_corners=False
    )
    return out.permute(1, 0, 2, 3)  # (C, Xo, Yo, Zo)


def random_flip_affine(
    x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator | None = None
) -> torch.Tensor:
    """The global augmentation (flip, affine) of already-cut views ``(N, C, *S)``.

    Same maths as :func:`resample_views` with each view's box being the whole view.
    """
    full = Box((0,) * (x.dim() - 2), tuple(x.shape[2:]))
    return torch.cat([resample_views(v, [full], tuple(x.shape[2:]), cfg, gen) for v in x])


def _gaussian_kernels(std: torch.Tensor, radius: int) -> torch.Tensor:
    """Normalised 1D Gaussian kernels ``(N, 2 radius + 1)``; std 0 gives the identity."""
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t[None] / std.clamp_min(1e-3)[:, None]) ** 2)
    k = torch.where(std[:, None] < 1e-3, (t[None] == 0).float(), k)
    return k / k.sum(1, keepdim=True)


def _blur_matrices(kernels: torch.Tensor, length: int) -> torch.Tensor:
    """Banded ``(N, L, L)`` matrices that convolve a length-L axis with each kernel, edges
    replicated: ``K[i, clamp(i + t)] += w[t]``."""
    n, width = kernels.shape
    radius = width // 2
    i = torch.arange(length)[:, None]
    idx = (i + torch.arange(-radius, radius + 1)[None]).clamp(0, length - 1)
    mats = torch.zeros(n, length, length)
    return mats.scatter_add_(2, idx.expand(n, -1, -1), kernels[:, None, :].expand(-1, length, -1))


def random_blur(
    x: torch.Tensor,
    std: tuple[float, float],
    p: float = 1.0,
    gen: torch.Generator | None = None,
) -> torch.Tensor:
    """Separable Gaussian blur with a random std per view and axis (torchio ``RandomBlur``).

    Each axis is one batched matrix product with a banded matrix (fast on one core).

    Args:
        x: ``(N, C, *S)``.
        std: range of the std in voxels (kernel radius ``ceil(3 * std_max)``).
        p: probability to blur a view.

    Returns:
        ``(N, C, *S)``.
    """
    n, d = x.shape[0], x.dim() - 2
    radius = max(1, math.ceil(3 * std[1]))
    sig = _uniform(n * d, *std, gen).reshape(n, d)
    sig = sig * (torch.rand(n, 1, generator=gen) < p)
    y = x
    spatial = x.shape[2:]
    for axis in range(d):
        mats = _blur_matrices(_gaussian_kernels(sig[:, axis], radius), spatial[axis]).to(x.dtype)
        # (n, C*prod(before), L, prod(after)): left-multiplying by K blurs axis L in place
        before, after = x.shape[1] * math.prod(spatial[:axis]), math.prod(spatial[axis + 1 :])
        if after == 1:  # last axis: right-multiply by K^T
            y = (y.reshape(n, before, spatial[axis]) @ mats.transpose(1, 2)).reshape(x.shape)
        else:
            y = (mats[:, None] @ y.reshape(n, before, spatial[axis], after)).reshape(x.shape)
    return y


def random_noise(
    x: torch.Tensor, std: tuple[float, float], gen: torch.Generator | None = None
) -> torch.Tensor:
    """Additive Gaussian noise with a random std per view (torchio ``RandomNoise``)."""
    sig = _uniform(x.shape[0], *std, gen).view(-1, *[1] * (x.dim() - 1)).to(x.dtype)
    return x + sig * torch.randn(x.shape, generator=gen, dtype=x.dtype)


def random_gamma(
    x: torch.Tensor, log_gamma: tuple[float, float], gen: torch.Generator | None = None
) -> torch.Tensor:
    """``sign(x) |x|^gamma`` with ``log(gamma)`` uniform per view (torchio ``RandomGamma``)."""
    g = _uniform(x.shape[0], *log_gamma, gen).exp().view(-1, *[1] * (x.dim() - 1)).to(x.dtype)
    return torch.copysign(x.abs().pow(g), x)


def random_swap(
    x: torch.Tensor,
    patch: tuple[int, ...],
    iterations: int,
    gen: torch.Generator | None = None,
) -> torch.Tensor:
    """Swap ``iterations`` random pairs of patches of size ``patch`` (torchio ``RandomSwap``).

    The swaps are applied in order to an index array (cheap numpy slicing), then gathered
    once. Returns a new ``(N, C, *S)`` tensor.
    """
    n, d = x.shape[0], x.dim() - 2
    spatial = tuple(x.shape[2:])
    patch = tuple(patch)[-d:]
    if len(patch) != d or any(p > s for p, s in zip(patch, spatial, strict=True)):
        raise ValueError(f"swap patch {patch} does not fit views of size {spatial}")
    hi = torch.tensor([s - p + 1 for s, p in zip(spatial, patch, strict=True)])
    starts = (torch.rand(n, iterations, 2, d, generator=gen) * hi).long().numpy()
    strides = np.array([math.prod(spatial[i + 1 :]) for i in range(d)])
    offsets = np.ravel_multi_index(np.indices(patch).reshape(d, -1), spatial)  # patch voxels
    flat_starts = starts @ strides  # (n, iterations, 2)
    volume = math.prod(spatial)
    perm = np.empty((n, volume), dtype=np.int64)
    for i in range(n):
        idx = np.arange(volume)
        for fa, fb in flat_starts[i]:
            ia, ib = offsets + fa, offsets + fb
            idx[ia], idx[ib] = idx[ib], idx[ia].copy()
        perm[i] = idx
    flat = x.reshape(n, x.shape[1], volume)
    index = torch.from_numpy(perm)[:, None, :].expand(-1, x.shape[1], -1)
    return torch.gather(flat, 2, index).reshape(x.shape)


def random_grayscale(x: torch.Tensor, p: float, gen: torch.Generator | None = None) -> torch.Tensor:
    """Replace a view's channels by their mean with probability ``p`` (2D colour images)."""
    pick = (torch.rand(x.shape[0], generator=gen) < p).view(-1, *[1] * (x.dim() - 1))
    return torch.where(pick, x.mean(1, keepdim=True).expand_as(x), x)


def random_cutout(
    x: torch.Tensor, p: float, area: tuple[float, float], gen: torch.Generator | None = None
) -> torch.Tensor:
    """Erase one random box (of ``area`` fraction, filled with 0) with probability ``p``."""
    y = x.clone()
    spatial = x.shape[2:]
    for i in range(x.shape[0]):
        if float(torch.rand(1, generator=gen)) >= p:
            continue
        frac = float(_uniform(1, *area, gen)) ** (1 / len(spatial))
        size = [max(1, round(s * frac)) for s in spatial]
        start = [
            int(torch.randint(s - z + 1, (1,), generator=gen))
            for s, z in zip(spatial, size, strict=True)
        ]
        y[(i, slice(None), *[slice(a, a + z) for a, z in zip(start, size, strict=True)])] = 0
    return y


def corrupt(
    x: torch.Tensor,
    cfg: AugmentConfig,
    ops: tuple[str, ...],
    gen: torch.Generator | None = None,
) -> torch.Tensor:
    """Apply the local (appearance) ops named in ``ops``, in order, to ``(N, C, *S)``."""
    table = {
        "blur": lambda t: random_blur(t, cfg.blur_std, cfg.blur_p, gen),
        "noise": lambda t: random_noise(t, cfg.noise_std, gen),
        "gamma": lambda t: random_gamma(t, cfg.log_gamma, gen),
        "swap": lambda t: random_swap(t, cfg.swap_patch, cfg.swaps_for(tuple(t.shape[2:])), gen),
        "grayscale": lambda t: random_grayscale(t, cfg.grayscale_p, gen),
        "cutout": lambda t: random_cutout(t, cfg.cutout_p, cfg.cutout_area, gen),
    }
    unknown = [o for o in ops if o not in table]
    if unknown:
        raise ValueError(f"unknown augmentation ops {unknown}; known: {sorted(table)}")
    for op in ops:
        x = table[op](x)
    return x


def torchio_pipeline(cfg: AugmentConfig | None = None):
    """The official 3D pipeline from torchio: ``(spatial, global_corruption, local_corruption)``.

    ``spatial`` = ``RandomFlip`` + ``RandomAffine``; the corruptions are ``RandomBlur``,
    ``RandomNoise``, ``RandomGamma`` (+ ``RandomSwap`` for the global views), each applied to
    one ``(C, X, Y, Z)`` tensor at a time (RL4M/PCRLv2, ``data.py``; without its trailing
    ``ZNormalization``, see the README's DIFFERENCES).
    """
    import torchio as tio

    cfg = cfg or AugmentConfig()
    spatial = tio.Compose(
        [
            tio.RandomFlip(axes=cfg.flip_axes, flip_probability=cfg.flip_p),
            tio.RandomAffine(scales=cfg.scales, degrees=cfg.degrees),
        ]
    )
    common = [
        tio.RandomBlur(std=cfg.blur_std),
        tio.RandomNoise(std=cfg.noise_std),
        tio.RandomGamma(log_gamma=cfg.log_gamma),
    ]
    swap = tio.RandomSwap(patch_size=cfg.swap_patch, num_iterations=cfg.swap_iterations)
    return spatial, tio.Compose([*common, swap]), tio.Compose(common)
