"""PCRLv2 (Zhou et al., TPAMI 2023): multi-scale pixel restoration and feature comparison
on the nsUNet's pyramid, with local views from sub-crop (Sec. 3, Eq. 4-10, Fig. 2).

A batch holds two globally augmented views and their clean targets, and optionally local
views (see :mod:`pcrl_lib.views`)::

    batch = {"global1": (B, C, *S), "global2": (B, C, *S),    # locally corrupted inputs
             "target1": (B, C, *S), "target2": (B, C, *S),    # globally augmented only
             "locals": (B, L, C, *s)}                          # optional

Every ablation of Tables I-III is a switch of :class:`PCRLv2Config`; the two named presets
(:func:`pcrlv2_config`) are ``"paper"`` (the method as the paper states it) and
``"official"`` (what RL4M/PCRLv2's ``train_2d.py`` / ``train_3d.py`` compute where they
differ; see the README's DIFFERENCES section).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from pcrl_lib.losses import pcrlv2_objective, restoration_loss, symmetric_negative_cosine
from pcrl_lib.methods.base import require_keys
from pcrl_lib.models.heads import ComparisonHead, Predictor, RestorationHead
from pcrl_lib.models.layers import conv, resize_to
from pcrl_lib.models.nsunet import CHECKPOINT_CHOICES, NSUNet

PRESETS = ("paper", "official")


@dataclass(frozen=True)
class PCRLv2Config:
    """Every switch of PCRLv2 and of its ablations (Tables I-III).

    Attributes:
        spatial_dims: 2 or 3.
        in_channels: image channels (3 for the 2D ResNet-18 stem, 1 for CT).
        depth: down-samplings of the 3D encoder (5 = bottleneck at rate 32).
        width: 3D channel multiplier (1.0 = paper).
        skip: U-Net skip connections (Table I; the method has none).
        restoration: pixel restoration on/off (Table III).
        comparison: feature comparison on/off (Table III).
        scales: 1, 3 or 5 (Table III). 5: rates 16, 8, 4, 2, 1; 3: rates 4, 2, 1;
            1: restoration at full resolution and comparison on the encoder output.
        comparison_mode: ``"pairwise"`` (the same scale in both views) or ``"crossed"``
            (two different scales, Table II).
        crops: ``"sub"``, ``"multi"`` or ``"none"`` - how views are drawn (Table III rows
            4-6); with ``"none"`` there are no local views and no local-global term.
        restore_views: 2 (both views, the paper) or 1 (only the first, the official code).
        scale_sampling: ``"per_step"`` (one random scale per step for every term, the
            paper) or ``"per_term"`` (a fresh scale per comparison term, the official code).
        full_resolution_mse: add an unweighted full-resolution MSE every step and weight
            the sampled scale's MSE by ``0.5 (1 + cos(pi * progress))`` (official code).
        restore_activation: ``"none"`` or ``"sigmoid"`` (the official 3D heads).
        restore_head: ``"paper"`` (Conv1x1 after Conv-BN-ReLU) or ``"light"`` (BN(Conv3x3),
            the official 3D ``deep_supervision_head``); see :class:`RestorationHead`.
        checkpoint: ``"none"``, ``"encoder"`` or ``"all"``: recompute full-resolution
            activations in the backward pass (not a change of the method; see
            :class:`~pcrl_lib.models.NSUNet`).
    """

    spatial_dims: int = 3
    in_channels: int = 1
    depth: int = 5
    width: float = 1.0
    skip: bool = False
    restoration: bool = True
    comparison: bool = True
    scales: int = 5
    comparison_mode: str = "pairwise"
    crops: str = "sub"
    restore_views: int = 2
    scale_sampling: str = "per_step"
    full_resolution_mse: bool = False
    restore_activation: str = "none"
    restore_head: str = "paper"
    checkpoint: str = "none"
    preset: str = field(default="paper", compare=False)

    def __post_init__(self) -> None:
        checks = [
            (self.spatial_dims in (2, 3), f"spatial_dims must be 2 or 3, got {self.spatial_dims}"),
            (self.scales in (1, 3, 5), f"scales must be 1, 3 or 5, got {self.scales}"),
            (
                self.comparison_mode in ("pairwise", "crossed"),
                f"comparison_mode must be 'pairwise' or 'crossed', got {self.comparison_mode!r}",
            ),
            (
                self.crops in ("sub", "multi", "none"),
                f"crops: 'sub', 'multi' or 'none', not {self.crops!r}",
            ),
            (
                self.restore_views in (1, 2),
                f"restore_views must be 1 or 2, got {self.restore_views}",
            ),
            (
                self.scale_sampling in ("per_step", "per_term"),
                f"scale_sampling must be 'per_step' or 'per_term', got {self.scale_sampling!r}",
            ),
            (self.restoration or self.comparison, "restoration and comparison are both off"),
            (
                self.checkpoint in CHECKPOINT_CHOICES,
                f"checkpoint must be one of {CHECKPOINT_CHOICES}, got {self.checkpoint!r}",
            ),
            (
                not (self.comparison_mode == "crossed" and self.scales == 1),
                "crossed comparison needs at least 3 scales",
            ),
            (
                self.spatial_dims == 2 or self.depth >= self.scales,
                f"{self.scales} scales need depth >= {self.scales}, got depth {self.depth}",
            ),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"PCRLv2Config: {msg}")

    def to_dict(self) -> dict:
        """A JSON-ready copy."""
        return asdict(self)


def pcrlv2_config(preset: str = "paper", spatial_dims: int = 3, **overrides) -> PCRLv2Config:
    """A named preset, with any field overridden.

    ``"paper"``: five scales, both views restored at one random scale per step, pairwise
    comparison, sub-crop. ``"official"``: the official code - in 3D the 4-stage encoder
    (depth 3) and three scales with sigmoid heads; full-resolution MSE every step plus a
    cosine-decayed MSE at one random scale; a fresh random scale per comparison term; only
    the first view restored.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown PCRLv2 preset {preset!r}; choose one of {PRESETS}")
    base = PCRLv2Config(
        spatial_dims=spatial_dims, in_channels=3 if spatial_dims == 2 else 1, preset=preset
    )
    if preset == "official":
        base = replace(
            base,
            depth=3 if spatial_dims == 3 else 5,
            scales=3 if spatial_dims == 3 else 5,
            restore_views=1,
            scale_sampling="per_term",
            full_resolution_mse=True,
            restore_activation="sigmoid" if spatial_dims == 3 else "none",
            restore_head="light" if spatial_dims == 3 else "paper",
        )
    return replace(base, **overrides)


def cosine_weight(progress: float) -> float:
    """``0.5 (1 + cos(pi * progress))``: 1 at the start of pre-training, 0 at the end."""
    return 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


class PCRLv2(nn.Module):
    """PCRLv2 on an :class:`~pcrl_lib.models.NSUNet` (Sec. 3, Fig. 2).

    Heads are distinct per scale and shared by the two siamese views and the local views.
    The scales of a step are drawn from torch's global generator (``torch.manual_seed``
    makes them repeatable); each view is decoded no finer than its terms need.

    Args:
        config: the switches; see :class:`PCRLv2Config` and :func:`pcrlv2_config`.

    Returns of ``forward(batch, progress)``: a dict of scalar tensors - ``loss`` (Eq. 10),
    and where computed ``restoration`` (Eq. 4), ``global_global`` (Eq. 8), ``local_global``
    (Eq. 9), ``collapse_std`` (std of the l2-normalised embedding; ~1/sqrt(D) when healthy,
    0 when collapsed) and ``scale`` (the sampled rate of the comparison, else of the restoration).
    """

    def __init__(self, config: PCRLv2Config | None = None) -> None:
        super().__init__()
        self.config = cfg = config or PCRLv2Config()
        self.net = NSUNet(
            cfg.spatial_dims,
            cfg.in_channels,
            cfg.depth,
            cfg.width,
            cfg.skip,
            checkpoint=cfg.checkpoint,
        )
        rates = self.net.rates
        if cfg.scales == 1:
            self.restore_rates, self.compare_rates = [1], [self.net.bottleneck_rate]
        else:  # PCRLv2Config checks depth >= scales; the 2D ResNet has five levels
            self.restore_rates = self.compare_rates = rates[-cfg.scales :]
        ch = self.net.level_channels
        self.restoration_heads = nn.ModuleDict()
        if cfg.restoration:
            for r in self.restore_rates:
                self.restoration_heads[str(r)] = RestorationHead(
                    cfg.spatial_dims,
                    ch[r],
                    cfg.in_channels,
                    cfg.restore_activation,
                    cfg.restore_head,
                )
        self.final_head = None
        if cfg.restoration and cfg.full_resolution_mse:
            k = 1 if cfg.spatial_dims == 3 else 3  # out_tr 1x1x1 conv / smp's 3x3 head
            self.final_head = conv(cfg.spatial_dims, ch[1], cfg.in_channels, k, padding=k // 2)
        self.comparison_heads = nn.ModuleDict()
        self.predictors = nn.ModuleDict()
        if cfg.comparison:
            for r in self.compare_rates:
                self.comparison_heads[str(r)] = ComparisonHead(ch[r])
            pairs = (
                [(r, r) for r in self.compare_rates]
                if cfg.comparison_mode == "pairwise"
                else [(a, b) for a in self.compare_rates for b in self.compare_rates if a != b]
            )
            for a, b in pairs:
                self.predictors[self._pkey(a, b)] = Predictor(ch[a], ch[b])

    @property
    def encoder(self) -> nn.Module:
        """The encoder that downstream tasks fine-tune."""
        return self.net.encoder

    @staticmethod
    def _pkey(a: int, b: int) -> str:
        return str(a) if a == b else f"{a}to{b}"

    def _randint(self, n: int) -> int:
        return int(torch.randint(n, (1,)).item())

    def _draw_scale_index(self) -> int:
        return self._randint(
            len(self.compare_rates if self.config.comparison else self.restore_rates)
        )

    def _draw_pair(self, i: int) -> tuple[int, int]:
        """Comparison rates ``(a, b)`` for scale index ``i``: equal when pairwise; a
        different random rate ``b`` when crossed."""
        a = self.compare_rates[i]
        if self.config.comparison_mode == "pairwise":
            return a, a
        others = [r for r in self.compare_rates if r != a]
        return a, others[self._randint(len(others))]

    def _embeddings(self, pyramids: dict[str, dict]):
        """Cached ``z(view, rate)`` (Eq. 5) and ``p(view, a, b)`` (Eq. 6), each computed once
        per step on the whole batch of that view (all local views together, as BN sees them
        in the official code)."""
        zs: dict = {}
        ps: dict = {}

        def z(view: str, rate: int) -> torch.Tensor:
            if (view, rate) not in zs:
                zs[view, rate] = self.comparison_heads[str(rate)](pyramids[view][rate])
            return zs[view, rate]

        def p(view: str, a: int, b: int) -> torch.Tensor:
            if (view, a, b) not in ps:
                ps[view, a, b] = self.predictors[self._pkey(a, b)](z(view, a))
            return ps[view, a, b]

        return z, p

    def _restore(self, pyramid: dict, rate: int, size: tuple[int, ...]) -> torch.Tensor:
        return resize_to(self.restoration_heads[str(rate)](pyramid[rate]), size)

    def forward(self, batch: dict[str, torch.Tensor], progress: float = 0.0) -> dict:
        """Eq. 10 on one batch; see the class docstring for the returned dict."""
        cfg = self.config
        require_keys(batch, ("global1", "global2"), "PCRLv2")
        if cfg.restoration:
            require_keys(batch, ("target1", "target2")[: cfg.restore_views], "PCRLv2")
        use_locals = cfg.comparison and cfg.crops != "none"
        if use_locals:
            require_keys(batch, ("locals",), f"PCRLv2 with crops={cfg.crops!r}")
        # Draw this step's scales, then decode each view no finer than its terms need.
        i = self._draw_scale_index()
        r_rest = self.restore_rates[i] if cfg.restoration else None
        gg = self._draw_pair(i) if cfg.comparison else None
        n_terms = 2 * batch["locals"].shape[1] if use_locals else 0
        if cfg.scale_sampling == "per_term":
            lg = [self._draw_pair(self._draw_scale_index()) for _ in range(n_terms)]
        else:
            lg = [gg] * n_terms
        need1, need2 = [], []
        if cfg.restoration:
            need1.append(1 if cfg.full_resolution_mse else r_rest)
            need1.append(r_rest)
            if cfg.restore_views == 2:
                need2.append(r_rest)
        if cfg.comparison:
            need1 += [gg[0]] + [a for a, _ in lg[0::2]]  # even terms meet view 1
            need2 += [gg[1]] + [a for a, _ in lg[1::2]]
        pyramids = {"1": self.net(batch["global1"], finest_rate=min(need1))}
        if need2:
            pyramids["2"] = self.net(batch["global2"], finest_rate=min(need2))
        if use_locals:
            local = batch["locals"].flatten(0, 1)
            pyramids["l"] = self.net(local, finest_rate=min(b for _, b in lg))

        out: dict[str, torch.Tensor] = {}
        if cfg.restoration:
            out["restoration"] = self._restoration_term(batch, pyramids, r_rest, progress)
        if cfg.comparison:
            z, p = self._embeddings(pyramids)
            a, b = gg
            out["global_global"] = symmetric_negative_cosine(
                p("1", a, b), z("1", a), p("2", b, a), z("2", b)
            )
            out["collapse_std"] = F.normalize(z("1", a).detach().float(), dim=1).std(0).mean()
            if use_locals:
                n_loc = batch["locals"].shape[1]
                terms = []
                for t, (a, b) in enumerate(lg):
                    g, j = ("1", "2")[t % 2], t // 2  # local j meets both globals
                    zl = z("l", b).unflatten(0, (-1, n_loc))[:, j]
                    pl = p("l", b, a).unflatten(0, (-1, n_loc))[:, j]
                    terms.append(symmetric_negative_cosine(p(g, a, b), z(g, a), pl, zl))
                out["local_global"] = torch.stack(terms).mean()
        out["loss"] = pcrlv2_objective(
            out.get("restoration"), out.get("global_global"), out.get("local_global")
        )
        out["scale"] = torch.tensor(float(gg[0] if cfg.comparison else r_rest))
        return out

    def _restoration_term(
        self, batch: dict, pyramids: dict, rate: int, progress: float
    ) -> torch.Tensor:
        """Eq. 4 at ``rate`` for the restored views; with ``full_resolution_mse`` (official
        code) the full-resolution MSE plus the cosine-weighted MSE at ``rate``."""
        cfg = self.config
        size = tuple(batch["global1"].shape[2:])
        first = restoration_loss(self._restore(pyramids["1"], rate, size), batch["target1"])
        if cfg.full_resolution_mse:
            full = restoration_loss(self.final_head_out(pyramids["1"]), batch["target1"])
            return full + cosine_weight(progress) * first
        if cfg.restore_views == 1:
            return first
        second = restoration_loss(self._restore(pyramids["2"], rate, size), batch["target2"])
        return (first + second) / 2

    def final_head_out(self, pyramid: dict) -> torch.Tensor:
        """The official code's full-resolution output head (``out_tr``) on rate 1."""
        y = self.final_head(pyramid[1])
        return torch.sigmoid(y) if self.config.restore_activation == "sigmoid" else y
