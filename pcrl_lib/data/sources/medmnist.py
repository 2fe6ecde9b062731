"""MedMNIST v2 (Yang et al., Scientific Data 2023) ``.npz`` files as a mid-size real option
for courses: ``chestmnist`` (NIH ChestX-ray14, 14 findings), ``nodulemnist3d`` (LIDC nodules,
malignant or not) and ``organmnist3d`` (11 abdominal organs), at any released size
(``<name>.npz`` or ``<name>_<size>.npz``), read from a folder the user gives - never
downloaded. MedMNIST's own train / val / test splits are kept.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pcrl_lib.data.plausibility import check_8bit
from pcrl_lib.data.prepared import PreparedWriter
from pcrl_lib.data.synthetic.xray import NIH_FINDINGS

MEDMNIST = {
    "chestmnist": {"dims": 2, "labels": list(NIH_FINDINGS), "multi_label": True},
    "nodulemnist3d": {"dims": 3, "labels": ["malignant"], "multi_label": True},
    "organmnist3d": {"dims": 3, "labels": [f"organ_{k}" for k in range(11)], "multi_label": False},
}
_KEYS = [f"{s}_{k}" for s in ("train", "val", "test") for k in ("images", "labels")]


def _find(raw: Path, name: str, size: int | None) -> Path:
    names = (
        [f"{name}_{size}.npz"]
        if size
        else [f"{name}.npz", *sorted(p.name for p in raw.glob(f"{name}_*.npz"))]
    )
    for n in names:
        if (raw / n).is_file():
            return raw / n
    raise FileNotFoundError(
        f"{raw}: no {' or '.join(names[:2])} (MedMNIST files are <name>.npz or <name>_<size>.npz)"
    )


def prepare_medmnist(
    raw: str | os.PathLike,
    out: str | os.PathLike,
    name: str = "chestmnist",
    size: int | None = None,
) -> list[Path]:
    """Prepare one MedMNIST dataset. Multi-class labels (organmnist3d) become one-hot columns
    so every task trains with the same per-class sigmoid / BCE head."""
    if name not in MEDMNIST:
        raise ValueError(f"MedMNIST dataset must be one of {sorted(MEDMNIST)}, got {name!r}")
    raw, out = Path(raw), Path(out)
    path = _find(raw, name, size)
    spec = MEDMNIST[name]
    try:
        data = np.load(path)
        arrays = {k: data[k] for k in _KEYS}
    except KeyError as err:
        raise ValueError(f"{path}: missing array {err} (expected {_KEYS})") from err
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: unreadable .npz ({err})") from err
    writer = PreparedWriter(out, f"medmnist-{name}", str(path), {"file": path.name, **spec})
    splits: dict[str, list[str]] = {}
    n_labels = len(spec["labels"])
    for split in ("train", "val", "test"):
        images, labels = (
            arrays[f"{split}_images"],
            arrays[f"{split}_labels"].reshape(len(arrays[f"{split}_images"]), -1),
        )
        check_8bit(images, f"{path} ({split}_images)")
        if images.ndim != spec["dims"] + 1:
            raise ValueError(
                f"{path}: {split}_images has shape {images.shape}, expected {spec['dims']}D images"
            )
        if not spec["multi_label"]:
            if labels.min() < 0 or labels.max() >= n_labels:
                raise ValueError(f"{path}: {split}_labels outside 0..{n_labels - 1}")
            labels = np.eye(n_labels, dtype=np.float32)[labels[:, 0]]
        elif labels.shape[1] != n_labels:
            raise ValueError(
                f"{path}: {split}_labels has {labels.shape[1]} columns, expected {n_labels}"
            )
        ids = []
        for k, (image, label) in enumerate(zip(images, labels, strict=True)):
            case_id = f"{split}{k:06d}"
            writer.add(
                case_id,
                case_id,
                dict(zip(spec["labels"], label.astype(float).tolist(), strict=True)),
                image=image[None].astype(np.uint8),
            )
            ids.append(case_id)
        splits[split] = ids
    return [writer.finish(splits)]
