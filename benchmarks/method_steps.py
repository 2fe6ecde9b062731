"""Pre-training step time of every method at a profile's shapes (forward, backward, SGD step;
inputs prepared beforehand, so the time is the model's).

    python benchmarks/method_steps.py --profile demo --dim 3 --steps 3

Prints one JSON line per method: ``method``, ``dim``, ``batch``, ``median_s``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from pcrl_lib.data.phantom import phantom_ct
from pcrl_lib.data.synthetic.xray import synthetic_chest_xray
from pcrl_lib.engine.experiment import _visual_words
from pcrl_lib.methods.registry import METHODS
from pcrl_lib.perf import autocast_context, effective_dtype
from pcrl_lib.pipeline import paper_view_generator
from pcrl_lib.profiles import pretrain_settings


def method_images(profile: str, dim: int) -> list[np.ndarray]:
    """A batch's worth of synthetic images at the profile's pre-training batch size."""
    s = pretrain_settings(profile, dim)
    if dim == 3:
        return [phantom_ct((144, 144, 128), seed=i) for i in range(s.batch_size)]
    return [np.repeat(synthetic_chest_xray(0, i, 224)[0][None], 3, 0) for i in range(s.batch_size)]


def method_step_inputs(
    profile: str, dim: int, key: str, images: list[np.ndarray]
) -> tuple[torch.nn.Module, dict]:
    """Method ``key`` built at the profile's encoder size (seed 0) and one batch of its
    views of ``images``."""
    s = pretrain_settings(profile, dim)
    spec = METHODS[key]
    torch.manual_seed(0)
    kw = {"preset": "paper"} if key == "PCRLv2" else {}
    model = spec.build(dim, 1 if dim == 3 else 3, s.depth, s.width, **kw)
    crops = model.config.crops if key == "PCRLv2" else "none"
    base = paper_view_generator(dim, crops, **(s.views or {}))
    if key == "TransVW":
        items, gen = _visual_words([lambda im=im: im for im in images], base, 4, len(images) - 1, 0)
        samples = [gen(items[i](), i) for i in range(len(images))]
    else:
        gen = spec.inputs(base)
        samples = [gen(im, i) for i, im in enumerate(images)]
    return model, {k: torch.stack([x[k] for x in samples]) for k in samples[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="demo", choices=("smoke", "demo", "paper"))
    parser.add_argument("--dim", type=int, default=3, choices=(2, 3))
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    s = pretrain_settings(args.profile, args.dim)
    images = method_images(args.profile, args.dim)
    for key, spec in METHODS.items():
        if args.dim not in spec.dims:
            continue
        model, batch = method_step_inputs(args.profile, args.dim, key, images)
        opt = torch.optim.SGD(
            [p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9
        )
        times = []
        for _ in range(args.steps + 1):
            t = time.perf_counter()
            with autocast_context(s.dtype, "cpu"):
                loss = model(batch)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t)
        out = {
            "method": key,
            "dim": args.dim,
            "batch": s.batch_size,
            "dtype": s.dtype,
            "dtype_used": effective_dtype(s.dtype),
            "width": s.width,
            "median_s": round(float(np.median(times[1:])), 3),
        }
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
