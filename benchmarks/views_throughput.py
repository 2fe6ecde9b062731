"""Throughput of the 3D input pipeline on one core: prepared CT volume -> training sample.

One sample = sub-crop (two global crops with IoU >= 0.3, six locals in their bounding box,
the background filter) + global augmentation (flip, affine) giving the two targets + local
augmentation (blur, noise, gamma, swap) giving the two inputs + six augmented locals; the
crops are cut on the fly. Prints one JSON line with ``samples_per_s``.

    python benchmarks/views_throughput.py                     # batched torch pipeline
    python benchmarks/views_throughput.py --backend torchio   # the official torchio transforms
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import torch

from pcrl_lib.data.phantom import phantom_ct
from pcrl_lib.pipeline import paper_view_generator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("torch", "torchio"), default="torch")
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument(
        "--shape", type=int, nargs=3, default=(320, 320, 240), help="volume size (1 mm voxels)"
    )
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    volume = phantom_ct(tuple(args.shape))
    gen = replace(paper_view_generator(3), backend=args.backend)
    gen(volume, seed=-1 % 2**31)  # warm-up
    start = time.perf_counter()
    for i in range(args.samples):
        sample = gen(volume, seed=i)
    elapsed = time.perf_counter() - start
    print(
        json.dumps(
            {
                "benchmark": "views_throughput",
                "backend": args.backend,
                "samples_per_s": round(args.samples / elapsed, 2),
                "ms_per_sample": round(1000 * elapsed / args.samples, 2),
                "threads": args.threads,
                "volume": list(args.shape),
                "sample": {k: list(v.shape) for k, v in sample.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
