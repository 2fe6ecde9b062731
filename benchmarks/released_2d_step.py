"""The released code's 2D PCRLv2 training step, rebuilt from public packages, timed on the CPU.

The released 2D model (RL4M/PCRLv2 ``models/pcrlv2_model.py``, MIT) is
``segmentation_models_pytorch``'s ``Unet("resnet18")`` whose decoder is replaced: five
blocks (256, 128, 64, 32, 16 channels) that up-sample by 2 (nearest) and apply two
3x3 conv-BN-ReLU - the skip connections are ignored - each with a deep-supervision head
(3x3 conv-BN-ReLU, 1x1 conv to 3), a pooled projection (global average, BatchNorm1d) and a
predictor (Linear 2x, BN, ReLU, Linear); smp's segmentation head (3x3 conv to 3). smp's
ResNet-18 encoder is torchvision's ResNet-18 without its classifier, so this script builds
the same network from torchvision alone. The step is ``train_2d.train_pcrlv2_inner``: the
two global views and the six 96^2 local views (one forward pass for all locals), MSE
restoration of view 1, the cosine terms at one randomly drawn decoder scale, the locals
against both globals, the cosine-weighted middle-mask MSE, SGD - fp32, as released.

    python benchmarks/released_2d_step.py --batch 8 --steps 3 --threads 2

Prints one JSON line: ``median_s``, ``peak_rss_mb`` (the process's peak resident memory),
``batch``, ``torch`` - the format ``benchmarks/side_by_side.py`` reads.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import resource
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18


def conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    """smp's ``Conv2dReLU`` with batch norm: 3x3 conv (no bias) - BN - ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)
    )


class Block(nn.Module):
    """One released decoder block: up-sample, two convs, and its three heads."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(conv_bn_relu(c_in, c_out), conv_bn_relu(c_out, c_out))
        self.mask = nn.Sequential(
            nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(True),
            nn.Conv2d(c_out, 3, 1),
        )  # fmt: skip
        self.bn = nn.BatchNorm1d(c_out)
        self.predictor = nn.Sequential(
            nn.Linear(c_out, 2 * c_out), nn.BatchNorm1d(2 * c_out), nn.ReLU(True),
            nn.Linear(2 * c_out, c_out),
        )  # fmt: skip

    def forward(self, x: torch.Tensor):
        x = self.convs(F.interpolate(x, scale_factor=2, mode="nearest"))
        pro = self.bn(F.adaptive_avg_pool2d(x, 1).flatten(1))
        return x, pro, self.predictor(pro), self.mask(x)


class Released2D(nn.Module):
    """The released 2D PCRLv2 network (module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        net = resnet18(weights=None)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu)
        self.layers = nn.Sequential(net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4)
        channels = (512, 256, 128, 64, 32, 16)
        self.blocks = nn.ModuleList(
            Block(a, b) for a, b in zip(channels[:-1], channels[1:], strict=True)
        )
        self.head = nn.Conv2d(16, 3, 3, padding=1)

    def forward(self, x: torch.Tensor, local: bool = False):
        x = self.layers(self.stem(x))  # the deepest map: the released decoder uses no skip
        outs, masks = [], []
        for i, block in enumerate(self.blocks):
            x, pro, pre, mask = block(x)
            outs.append((pro, pre))
            if not local:
                masks.append(F.interpolate(mask, scale_factor=2 ** (4 - i), mode="bilinear"))
        return outs, (None if local else self.head(x)), masks


def cos_loss(out1, out2):
    """The released ``cos_loss``: one random scale, symmetric negative cosine."""
    i = random.randint(0, len(out1) - 1)
    a, b = out1[i], out2[i]
    cos = F.cosine_similarity
    return -(cos(a[1], b[0].detach()).mean() + cos(b[1], a[0].detach()).mean()) * 0.5, i


def step(model, opt, x1, x2, gt, local_views, epoch: int = 0) -> float:
    """One released training step (``train_2d.train_pcrlv2_inner``'s loop body)."""
    out1, mask1, middle1 = model(x1)
    out2, _, _ = model(x2)
    loss2, index = cos_loss(out1, out2)
    bsz = x1.shape[0]
    local_out, _, _ = model(torch.cat(local_views), local=True)
    local_out = [torch.stack(t) for t in local_out]
    local_loss = 0.0
    for i in range(len(local_views)):
        part = [t[:, bsz * i : bsz * (i + 1)] for t in local_out]
        local_loss += cos_loss(out1, part)[0] + cos_loss(out2, part)[0]
    local_loss = local_loss / (2 * len(local_views))
    loss = F.mse_loss(mask1, gt) + loss2 + local_loss
    loss = loss + 0.5 * (1 + math.cos(math.pi * epoch / 240)) * F.mse_loss(middle1[index], gt)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return float(loss.detach())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    random.seed(0)
    model = Released2D().train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9, weight_decay=1e-5)
    b = args.batch
    x1, x2, gt = (torch.rand(b, 3, 224, 224) for _ in range(3))
    local_views = [torch.rand(b, 3, 96, 96) for _ in range(6)]
    times = []
    for _ in range(args.steps + 1):  # the first is a warm-up
        tic = time.perf_counter()
        step(model, opt, x1, x2, gt, local_views)
        times.append(time.perf_counter() - tic)
    print(
        json.dumps(
            {
                "benchmark": "released_2d_step",
                "batch": b,
                "median_s": round(statistics.median(times[1:]), 3),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "torch": torch.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
