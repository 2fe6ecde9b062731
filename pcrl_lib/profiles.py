"""What each reproduction profile runs on - the one place where small profiles scale the
paper down.

- ``smoke``: tiny synthetic data; every notebook runs in minutes; numbers are meaningless.
- ``demo``: synthetic data large enough that the tables' orderings can show on a CPU.
- ``paper``: the real datasets (prepared beforehand with ``python -m pcrl_lib prepare``).

Data folders live under the data root (``$PCRL_DATA_ROOT``, see :mod:`pcrl_lib.paths`):
``<data_root>/<profile>/<dataset>`` for synthetic profiles, ``<data_root>/<dataset>`` for the
real data.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pcrl_lib.data.prepare import prepare
from pcrl_lib.paths import PROFILES, data_root

# Each table's source and target datasets, by role.
ROLES = ("luna", "lits", "brats", "nih", "chexpert")

DATA: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {
    "smoke": {
        "luna": (
            "synthetic-luna",
            {"n": 6, "shape": (64, 64, 40), "spacing": (1.5, 1.5, 2.0), "crop": 32},
        ),
        "lits": (
            "synthetic-lits",
            {"n": 5, "shape": (64, 64, 40), "spacing": (2.0, 2.0, 2.5), "margin": 4},
        ),
        "brats": ("synthetic-brats", {"n": 5, "shape": (40, 40, 32)}),
        "nih": ("synthetic-nih", {"n": 60, "size": 64}),
        "chexpert": ("synthetic-chexpert", {"n": 40, "size": 64}),
    },
    # the demo's test splits are sized for a standard error of about a point on each table's
    # headline metric (LUNA: 1925 test candidates, 725 positives, 108 validation positives;
    # NIH: 1000 test X-rays; LiTS: 20 test volumes; BraTS: 126 - its per-case Dice varies
    # ~5x more than LiTS's), hence more data and larger test fractions than the paper's
    # 70/10/20
    "demo": {
        "luna": (
            "synthetic-luna",
            {
                "n": 200,
                "shape": (96, 96, 64),
                "spacing": (1.5, 1.5, 2.0),
                "crop": 32,
                "max_nodules": 16,
                "extra_mimics": 5,
                "fractions": (0.3, 0.1, 0.6),
            },
        ),
        "lits": (
            "synthetic-lits",
            {
                "n": 40,
                "shape": (96, 96, 64),
                "spacing": (2.0, 2.0, 2.5),
                "margin": 8,
                "fractions": (0.4, 0.1, 0.5),
            },
        ),
        "brats": (
            "synthetic-brats",
            {"n": 180, "shape": (48, 48, 40), "fractions": (0.2, 0.1, 0.7)},
        ),
        "nih": ("synthetic-nih", {"n": 2500, "size": 64, "fractions": (0.5, 0.1, 0.4)}),
        "chexpert": ("synthetic-chexpert", {"n": 1000, "size": 64}),
    },
    "paper": {role: (role, {}) for role in ROLES},
}


def _check_profile(profile: str) -> None:
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")


def dataset_dir(profile: str, role: str, root: str | os.PathLike | None = None) -> Path:
    """Where the prepared data of ``role`` (``luna``, ``lits``, ...) lives for ``profile``."""
    _check_profile(profile)
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    base = data_root(root)
    return base / role if profile == "paper" else base / profile / DATA[profile][role][0]


def _matches(folder: Path, options: dict[str, Any]) -> bool:
    info_path = folder / "prepare.json"
    if not info_path.is_file():
        return False
    params = json.loads(info_path.read_text()).get("params", {})
    want = json.loads(json.dumps(options))  # tuples -> lists, as stored
    return all(params.get(k) == v for k, v in want.items())


def ensure_data(
    profile: str, root: str | os.PathLike | None = None, roles: tuple[str, ...] = ROLES
) -> dict[str, Path]:
    """Make the profile's datasets ready and return ``role -> folder``.

    Synthetic profiles generate what is missing (or was made with other options) and reuse
    the rest; ``paper`` only checks that each real dataset was prepared and says how to
    prepare it when not.
    """
    _check_profile(profile)
    out = {}
    for role in roles:
        name, options = DATA[profile][role]
        folder = dataset_dir(profile, role, root)
        if profile == "paper":
            if (
                not (folder / "prepare.json").is_file()
                and not (folder / "volumes" / "prepare.json").is_file()
            ):
                raise FileNotFoundError(
                    f"{folder}: the {role} dataset is not prepared; run "
                    f"`python -m pcrl_lib prepare {name} --raw <downloaded {role}> --out {folder}`"
                )
        else:
            check = folder / "volumes" if role == "luna" else folder
            if not _matches(check, options):
                prepare(name, folder, **options)
        out[role] = folder
    return out


@dataclass(frozen=True)
class FinetuneSettings:
    """A task's fine-tuning settings at one profile (paper: Sec. 4.3; see the README table).

    ``patch_size``: training patch (segmentation); evaluation runs over whole volumes
    patch by patch with ``overlap``. ``depth`` / ``width``: the 3D encoder's size (must
    match the pre-trained one). ``steps``: when set, ``epochs`` is ignored and every label
    ratio trains for about this many SGD steps, validating at most ``evals`` times, the last
    epoch always among them (small profiles: the time of a run does not grow with the ratio;
    more labels give more distinct samples, not more steps). ``precise_bn``: re-estimate the
    batch-norm statistics before each validation
    (:func:`pcrl_lib.engine.finetune.recalibrate_batch_norm`; small profiles, whose few
    dozen steps leave the running statistics far from the weights').
    ``eval_batch_size``: samples - or patches of a whole volume - per forward pass in
    evaluation (default ``batch_size``). In evaluation mode they are independent: speed and
    memory change, and in bf16 the rounding of a few outputs (the demo's 16^3 patches go 64
    at a time, ~1.5x faster than 4). ``optimizer``: ``"sgd"`` (the paper's statement) or
    ``"adam"`` (the released fine-tuning code, RL4M/PCRLv2 ``finetune.py``; the small
    profiles, with ``lr`` chosen once on the validation split for TS and used for every
    method - ``benchmarks/select_finetune_lr.py``)."""

    epochs: int
    batch_size: int
    lr: float = 1e-2
    patch_size: tuple[int, ...] | None = None
    samples_per_case: int = 1
    overlap: int = 0
    depth: int = 5
    width: float = 1.0
    dtype: str = "fp32"
    eval_every: int = 1
    steps: int | None = None
    evals: int = 5
    precise_bn: bool = False
    eval_batch_size: int | None = None
    optimizer: str = "sgd"

    def schedule(self, n_samples: int) -> tuple[int, int]:
        """``(epochs, eval_every)`` for a training set of ``n_samples`` samples.

        With ``steps``: ``epochs = ceil(steps / (n_samples // batch_size))`` and
        ``eval_every = ceil(epochs / evals)``, so that validating every ``eval_every``
        epochs and after the last (:func:`pcrl_lib.engine.finetune.finetune`) happens at
        most ``evals`` times - e.g. 40 epochs, 3 evals: after epochs 14, 28 and 40."""
        if self.steps is None:
            return self.epochs, self.eval_every
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        per_epoch = max(1, n_samples // self.batch_size)
        epochs = max(1, math.ceil(self.steps / per_epoch))
        return epochs, max(1, math.ceil(epochs / self.evals))


# Adam at one learning rate for every method, chosen on the validation split for TS
# (benchmarks/select_finetune_lr.py; results/studies/finetune_lr.csv)
DEMO_FINETUNE_LR = 3e-3
_DEMO_SEGMENTATION = FinetuneSettings(
    0, 4, DEMO_FINETUNE_LR, (16, 16, 16), 4, 0, depth=5, width=0.25, dtype="bf16", steps=90,
    evals=3, precise_bn=True, eval_batch_size=64, optimizer="adam",
)  # fmt: skip
_SMOKE_SEGMENTATION = FinetuneSettings(
    0, 2, DEMO_FINETUNE_LR, (32, 32, 16), 1, 0, depth=5, width=0.125, steps=4, evals=2,
    precise_bn=True, optimizer="adam",
)  # fmt: skip

FINETUNE: dict[str, dict[str, FinetuneSettings]] = {
    # the paper's statement: SGD lr 1e-2, momentum 0.9, weight decay 1e-5, cosine, 240 epochs;
    # batch 512 (2D), 32 (LUNA), 4 (LiTS, BraTS); crops 48^3, 256x256x64, 112^3
    "paper": {
        "luna": FinetuneSettings(240, 32),
        "nih": FinetuneSettings(240, 512),
        "brats": FinetuneSettings(240, 4, patch_size=(112, 112, 112), overlap=16),
        "lits": FinetuneSettings(240, 4, patch_size=(256, 256, 64), overlap=16),
    },
    # CPU scale (the whole grid in about 30 minutes on 2 cores): a quarter-width encoder,
    # 32^3 candidates, 16^3 segmentation patches, a step budget per run (``steps``), Adam
    # fmt: off
    "demo": {
        # depth 3 (the released 3D model's): the classifier pools a 4^3 map of a 32^3
        # candidate (depth 5 pooled 1^3); the pre-trained encoder's first stages load into it
        "luna": FinetuneSettings(
            0,
            8,
            DEMO_FINETUNE_LR,
            depth=3,
            width=0.25,
            dtype="bf16",
            steps=64,
            evals=3,
            precise_bn=True,
            optimizer="adam",
        ),
        "nih": FinetuneSettings(
            0,
            32,
            DEMO_FINETUNE_LR,
            dtype="bf16",
            steps=40,
            evals=3,
            precise_bn=True,
            optimizer="adam",
        ),
        "brats": _DEMO_SEGMENTATION,
        "lits": _DEMO_SEGMENTATION,
    },
    # fmt: on
    "smoke": {
        "luna": FinetuneSettings(
            0,
            8,
            DEMO_FINETUNE_LR,
            depth=3,
            width=0.125,
            steps=4,
            evals=2,
            precise_bn=True,
            optimizer="adam",
        ),
        "nih": FinetuneSettings(
            0, 16, DEMO_FINETUNE_LR, steps=4, evals=2, precise_bn=True, optimizer="adam"
        ),
        "brats": _SMOKE_SEGMENTATION,
        "lits": _SMOKE_SEGMENTATION,
    },
}


# the paper's classification inputs (Sec. 4.1-4.3): 48^3 LUNA candidates, 224 px X-rays
_PAPER_INPUT = {"luna": 48, "nih": 224}


def classifier_input_shape(profile: str, task: str) -> tuple[int, ...]:
    """``(C, *S)`` of one input of a classification task (``luna``, ``nih``) at ``profile``:
    the candidate crop or the X-ray size the profile prepares."""
    _check_profile(profile)
    if task not in _PAPER_INPUT:
        raise ValueError(f"{task!r} is not a classification task; choose luna or nih")
    if profile == "paper":
        side = _PAPER_INPUT[task]
    else:
        options = DATA[profile][task][1]
        side = options["crop"] if task == "luna" else options["size"]
    return (1, side, side, side) if task == "luna" else (3, side, side)


def finetune_settings(profile: str, task: str) -> FinetuneSettings:
    """The fine-tuning settings of ``task`` at ``profile``."""
    _check_profile(profile)
    if task not in FINETUNE[profile]:
        raise ValueError(f"unknown task {task!r}; choose one of {sorted(FINETUNE[profile])}")
    return FINETUNE[profile][task]


@dataclass(frozen=True)
class PretrainSettings:
    """Pre-training settings at one profile (paper: Sec. 4.3). ``views``: overrides of
    :func:`pcrl_lib.views.paper_view_config` (crop sizes, output sizes) for small data.

    ``encoder_init``: a weights file the encoder starts from instead of its random
    initialisation (any file :func:`pcrl_lib.models.checkpoints.load_encoder` reads), or
    ``"imagenet"`` for torchvision's ImageNet ResNet-18
    (:func:`pcrl_lib.methods.imagenet.imagenet_resnet18`; 2D). The paper does not mention
    one; the official 2D code does start from ImageNet - ``train_2d.py`` builds
    ``smp.Unet("resnet18", in_channels=3, classes=3)`` (RL4M/PCRLv2
    ``models/pcrlv2_model.py``), whose ``encoder_weights`` default is ``"imagenet"``.
    Every profile leaves it ``None``, as the paper describes the method.

    ``optimizer`` / ``weight_decay`` / ``warmup_steps`` / ``schedule``: see
    :class:`pcrl_lib.engine.pretrain.PretrainConfig` (paper: SGD, 1e-5, no warm-up, cosine)."""

    epochs: int
    batch_size: int
    depth: int = 5
    width: float = 1.0
    dtype: str = "fp32"
    lr: float = 1e-2
    views: dict[str, Any] | None = None
    encoder_init: str | None = None
    optimizer: str = "sgd"
    weight_decay: float = 1e-5
    warmup_steps: int = 0
    schedule: str = "cosine"


def _small_views(global_sizes, global_out, local_sizes, local_out) -> dict[str, Any]:
    from pcrl_lib.views import CropSizes

    return {
        "global_sizes": CropSizes(sizes=global_sizes),
        "global_out": global_out,
        "local_sizes": CropSizes(sizes=local_sizes),
        "local_out": local_out,
    }


PRETRAIN: dict[str, dict[int, PretrainSettings]] = {
    "paper": {3: PretrainSettings(240, 32), 2: PretrainSettings(240, 256)},
    # CPU scale: 32^3 global crops (sizes up to 48^3) and 16^3 locals in 3D, 32 / 16 px in 2D
    # (2D in fp32: bf16 diverged within an epoch at this size)
    "demo": {
        3: PretrainSettings(
            3, 8, width=0.25, dtype="bf16", lr=0.05,
            views=_small_views(((32, 32, 32), (48, 48, 32), (48, 48, 48)), (32, 32, 32), ((8, 8, 8), (16, 16, 16)), (16, 16, 16)),
        ),
        2: PretrainSettings(1, 32, lr=0.02, views={"global_out": (32, 32), "local_out": (16, 16)}),
    },
    "smoke": {
        3: PretrainSettings(
            1, 2, width=0.125,
            views=_small_views(((32, 32, 16), (48, 48, 32)), (32, 32, 16), ((8, 8, 8), (16, 16, 16)), (8, 8, 8)),
        ),
        2: PretrainSettings(1, 4, views={"global_out": (32, 32), "local_out": (16, 16)}),
    },
}  # fmt: skip


# The budget study's optimiser (pcrl_lib.budget) at the small profiles: AdamW at 1e-3,
# weight decay 1e-4, a 20-step linear warm-up, then a constant rate - chosen on the pretext
# loss over 200 steps of PCRLv2 against SGD at the profile's rate and AdamW at 3e-4, with the
# encoder drift beside it (benchmarks/select_pretrain_optimizer.py;
# results/studies/pretrain_optimizer.csv). The grid keeps PRETRAIN's settings (every table
# compares methods at one small budget, as before); `paper` keeps the paper's SGD.
STUDY_OPTIMIZER: dict[str, dict[str, Any]] = {
    "smoke": {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "warmup_steps": 1},
    "demo": {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "warmup_steps": 20},
    "paper": {},
}


def pretrain_settings(profile: str, spatial_dims: int) -> PretrainSettings:
    """The pre-training settings for ``spatial_dims`` (2 X-ray, 3 CT) at ``profile``."""
    _check_profile(profile)
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    return PRETRAIN[profile][spatial_dims]
