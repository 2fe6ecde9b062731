"""DrasCLR (Yu et al., "DrasCLR: A Self-supervised Framework of Learning Disease-related and
Anatomy-specific Representation for 3D Medical Images", 2023; public code:
batmanlab/DrasCLR) on this project's encoders.

- **Anatomy-specific encoder**: every convolution's kernel depends on where the patch lies
  in the anatomy, ``W(l) = W + sum_e sigmoid(r_e(l)) dW_e`` (a conditional,
  hyper-parameterised convolution: ``E`` expert kernels mixed by a routing layer ``r`` of
  the location ``l``; :class:`LocationConv3d`). The released code mixes the experts alone
  (``W(l) = sum_e sigmoid(r_e(l)) W_e``); here a shared kernel ``W`` carries what every
  location has in common and is what a downstream model loads (its tasks have no atlas
  location), the experts start small. This is a difference, stated in the README.
- **Local contrast** (MoCo, per location): a patch's query against its key (another
  augmentation of the same patch, from the momentum encoder), the negatives the same
  anatomical region's queue holds - patches of other scans at that place, so the features
  must tell apart what differs there (disease), not where it is.
- **Neighbourhood contrast**: the queries of the anchor's ``k`` nearest patches, summed,
  against the same key and negatives: patterns spanning regions.
- ``L = L_patch + beta L_neighbour`` (the released ``train.py``).

The released code trains on atlas-registered patch positions and keeps one queue per atlas
patch; here locations are continuous coordinates in ``[-1, 1]^3`` of a reference frame
(:mod:`pcrl_lib.data.location`) and the queues are per cell of a ``regions`` grid over it.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from pcrl_lib.methods.base import require_keys
from pcrl_lib.methods.contrastive import ema_update
from pcrl_lib.models.encoders import build_encoder
from pcrl_lib.models.layers import global_avg_pool


class LocationConv3d(nn.Conv3d):
    """A ``Conv3d`` whose kernel depends on a location: ``W + sum_e sigmoid(r_e(l)) dW_e``
    per sample (module docstring). ``location`` ``(B, L)`` is set before the forward pass
    (:func:`set_location`); without one it is the plain convolution with ``W``.

    Made from an existing ``nn.Conv3d`` by :func:`condition_on_location` (the parameters
    ``weight`` and ``bias`` keep their names; ``experts`` and ``routing`` are added)."""

    experts: nn.Parameter
    routing: nn.Linear
    location: torch.Tensor | None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, *S) -> (B, C_out, *S')``: one grouped convolution with each sample's
        own kernel."""
        if self.location is None:
            return super().forward(x)
        b = x.shape[0]
        if self.location.shape[0] != b:
            raise ValueError(f"location has {self.location.shape[0]} rows for a batch of {b}")
        gate = torch.sigmoid(self.routing(self.location.to(self.weight.dtype)))  # (B, E)
        kernels = self.weight + torch.einsum("be,e...->b...", gate, self.experts)
        kernels = kernels.reshape(b * self.out_channels, *self.weight.shape[1:])
        bias = None if self.bias is None else self.bias.repeat(b)
        out = F.conv3d(
            x.reshape(1, b * x.shape[1], *x.shape[2:]),
            kernels.to(x.dtype) if not torch.is_autocast_enabled(x.device.type) else kernels,
            bias,
            self.stride,
            self.padding,
            self.dilation,
            self.groups * b,
        )
        return out.reshape(b, self.out_channels, *out.shape[2:])


def condition_on_location(
    module: nn.Module, n_experts: int = 8, location_dim: int = 3, scale: float = 0.1
) -> nn.Module:
    """Make every ``nn.Conv3d`` in ``module`` a :class:`LocationConv3d` (in place): ``E``
    expert kernels, drawn like the kernel and scaled by ``scale``, and a routing layer
    ``L -> E``. Returns ``module``."""
    if n_experts < 1:
        raise ValueError(f"n_experts must be >= 1, got {n_experts}")
    convs = [m for m in module.modules() if type(m) is nn.Conv3d]
    if not convs:
        raise ValueError("condition_on_location: the module has no Conv3d to condition")
    for m in convs:
        m.__class__ = LocationConv3d
        experts = torch.empty(n_experts, *m.weight.shape, dtype=m.weight.dtype)
        for e in range(n_experts):
            nn.init.kaiming_uniform_(experts[e], a=5**0.5)  # nn.Conv3d's own initialisation
        m.experts = nn.Parameter(experts * scale)
        m.routing = nn.Linear(location_dim, n_experts).to(m.weight.device)
        m.location = None
    return module


def set_location(module: nn.Module, location: torch.Tensor | None) -> None:
    """Give every :class:`LocationConv3d` in ``module`` the batch's locations ``(B, L)``
    (``None``: plain convolutions)."""
    for m in module.modules():
        if isinstance(m, LocationConv3d):
            m.location = location


def region_index(location: torch.Tensor, regions: tuple[int, ...]) -> torch.Tensor:
    """The cell of a ``regions`` grid over ``[-1, 1]^L`` each location falls in:
    ``(B, L) -> (B,)`` long, row-major; locations outside are clamped to the border cells."""
    if location.shape[-1] != len(regions):
        raise ValueError(f"locations have {location.shape[-1]} coordinates, regions {regions}")
    index = torch.zeros(location.shape[0], dtype=torch.long, device=location.device)
    for a, n in enumerate(regions):
        cell = ((location[:, a] + 1) / 2 * n).floor().long().clamp(0, n - 1)
        index = index * n + cell
    return index


def drasclr_logits(
    q: torch.Tensor,
    k: torch.Tensor,
    r: torch.Tensor,
    negatives: torch.Tensor,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two InfoNCE logit tables, positive first: ``[q.k, q.n_1, ..., q.n_K] / T`` (the
    patch term) and ``[sum_j r_j.k, sum_j r_j.n_1, ...] / T`` (the neighbourhood term: the
    neighbours' similarities summed, as the released ``einsum("nrc,nc->n")``).

    Shapes: ``q, k (B, D)``, ``r (B, k, D)``, ``negatives (B, K, D)`` (each sample's own, its
    region's queue) -> ``(B, 1 + K)`` twice."""
    patch = torch.cat([(q * k).sum(1, keepdim=True), torch.einsum("bd,bkd->bk", q, negatives)], 1)
    neighbour = torch.cat(
        [torch.einsum("bnd,bd->b", r, k)[:, None], torch.einsum("bnd,bkd->bk", r, negatives)], 1
    )
    return patch / temperature, neighbour / temperature


class DrasCLR(nn.Module):
    """DrasCLR (module docstring): location-conditioned encoder, momentum key encoder,
    per-region queues, patch and neighbourhood InfoNCE.

    Args:
        spatial_dims: 3 (anatomical locations are 3D).
        in_channels, depth, width: the encoder.
        dim: the projection's size (128); ``hidden``: its MLP's hidden size.
        n_experts: expert kernels per convolution (8 in the released code).
        regions: the grid of anatomical cells, one queue each.
        queue_size: negatives per region (the released code: 4096 per atlas patch).
        temperature: 0.2; ``momentum``: the key encoder's EMA rate, 0.999.
        beta: the neighbourhood term's weight (1.0).

    Batch: ``{"patch1", "patch2"}`` ``(B, C, *P)`` two augmentations of a patch, ``"loc"``
    ``(B, 3)`` its location, ``"neighbours"`` ``(B, k, C, *P)`` and ``"neighbour_locs"``
    ``(B, k, 3)`` (:class:`pcrl_lib.methods.inputs.DrasCLRInputs`).
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        depth: int = 5,
        width: float = 1.0,
        dim: int = 128,
        hidden: int = 512,
        n_experts: int = 8,
        regions: tuple[int, ...] = (3, 3, 3),
        queue_size: int = 256,
        temperature: float = 0.2,
        momentum: float = 0.999,
        beta: float = 1.0,
    ) -> None:
        super().__init__()
        if spatial_dims != 3:
            raise ValueError("DrasCLR conditions on 3D anatomical locations: spatial_dims 3")
        if queue_size < 1 or temperature <= 0 or not 0 <= momentum <= 1:
            raise ValueError(
                f"need queue_size >= 1, temperature > 0, momentum in [0, 1]; got "
                f"{queue_size}, {temperature}, {momentum}"
            )
        self.encoder = condition_on_location(
            build_encoder(3, in_channels, depth=depth, width=width), n_experts, len(regions)
        )
        c = int(self.encoder.out_channels[-1])
        self.head = nn.Sequential(
            nn.Linear(c, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, dim)
        )
        self.key_encoder = copy.deepcopy(self.encoder).requires_grad_(False)  # EMA, no gradient
        self.key_head = copy.deepcopy(self.head).requires_grad_(False)
        n_regions = 1
        for n in regions:
            n_regions *= n
        self.register_buffer("queue", F.normalize(torch.randn(n_regions, queue_size, dim), dim=-1))
        self.register_buffer("queue_ptr", torch.zeros(n_regions, dtype=torch.long))
        self.regions, self.temperature, self.momentum, self.beta = (
            tuple(regions), temperature, momentum, beta,
        )  # fmt: skip

    def embed(self, x: torch.Tensor, location: torch.Tensor, key: bool = False) -> torch.Tensor:
        """``(B, C, *P), (B, 3) -> (B, dim)`` unit projections (the key path on request)."""
        encoder, head = (self.key_encoder, self.key_head) if key else (self.encoder, self.head)
        set_location(encoder, location)
        try:
            return F.normalize(head(global_avg_pool(encoder(x)[-1]).float()), dim=1)
        finally:
            set_location(encoder, None)

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor, regions: torch.Tensor) -> None:
        size = self.queue.shape[1]
        for r in regions.unique():
            rows = keys[regions == r][-size:]
            ptr = int(self.queue_ptr[r])
            slots = (ptr + torch.arange(len(rows), device=keys.device)) % size
            self.queue[r, slots] = rows.to(self.queue.dtype)
            self.queue_ptr[r] = (ptr + len(rows)) % size

    def forward(
        self, batch: dict[str, torch.Tensor], progress: float = 0.0
    ) -> dict[str, torch.Tensor]:
        """``{"loss", "loss_patch", "loss_neighbour", "accuracy"}`` (how often the key beats
        every negative in the patch term)."""
        require_keys(batch, ("patch1", "patch2", "loc", "neighbours", "neighbour_locs"), "DrasCLR")
        loc = batch["loc"].float()
        q = self.embed(batch["patch1"], loc)
        with torch.no_grad():
            if self.training:
                ema_update(self.key_encoder, self.encoder, self.momentum)
                ema_update(self.key_head, self.head, self.momentum)
            k = self.embed(batch["patch2"], loc, key=True)
        b, n_nb = batch["neighbours"].shape[:2]
        r = self.embed(
            batch["neighbours"].flatten(0, 1), batch["neighbour_locs"].flatten(0, 1).float()
        ).view(b, n_nb, -1)
        regions = region_index(loc, self.regions)
        negatives = self.queue[regions].clone()  # (B, K, dim): the same region's other scans
        target = torch.zeros(b, dtype=torch.long, device=q.device)
        logits_patch, logits_nb = drasclr_logits(q, k, r, negatives, self.temperature)
        loss_patch = F.cross_entropy(logits_patch, target)
        loss_nb = F.cross_entropy(logits_nb, target)
        if self.training:
            self._enqueue(k, regions)
        accuracy = (logits_patch.argmax(1) == 0).float().mean()
        return {
            "loss": loss_patch + self.beta * loss_nb,
            "loss_patch": loss_patch.detach(),
            "loss_neighbour": loss_nb.detach(),
            "accuracy": accuracy,
        }
