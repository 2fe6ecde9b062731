"""The IN baseline (2D): torchvision's ImageNet-supervised ResNet-18, from a file.

Nothing is downloaded: the weights come from a path the user gives or from the local torch
hub cache, where ``torchvision.models.resnet18(weights="IMAGENET1K_V1")`` leaves them once
run on a machine with internet access.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

RESNET18_FILE = "resnet18-f37072fd.pth"  # torchvision's IMAGENET1K_V1 file name


def imagenet_resnet18(path: str | os.PathLike | None = None) -> Path:
    """The path of ImageNet ResNet-18 weights: ``path``, else ``$PCRL_IMAGENET_WEIGHTS``, else
    ``<torch hub dir>/checkpoints/resnet18-f37072fd.pth``. Pass it as the fine-tuning
    ``checkpoint`` (the encoder keeps torchvision's names; ``fc`` is ignored).

    Raises:
        FileNotFoundError: none exists; the message says how to obtain the file.
    """
    candidates = [Path(p) for p in (path, os.environ.get("PCRL_IMAGENET_WEIGHTS")) if p]
    candidates.append(Path(torch.hub.get_dir()) / "checkpoints" / RESNET18_FILE)
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(
        f"ImageNet ResNet-18 weights not found (looked at {', '.join(map(str, candidates))}). "
        'On a machine with internet access run `python -c "import torchvision; '
        "torchvision.models.resnet18(weights='IMAGENET1K_V1')\"`, then copy "
        f"{RESNET18_FILE} from its torch hub cache (checkpoints/) and give its path "
        "(or set PCRL_IMAGENET_WEIGHTS)."
    )
