"""PyTorch datasets over prepared data (:class:`pcrl_lib.data.prepared.PreparedDataset`).

- :func:`pretraining_images`: lazy loaders of raw images for
  :class:`pcrl_lib.engine.pretrain.ViewDataset` (CT stays in HU for the background filter).
- :class:`ClassificationCases`: ``{"image": (C, *S) in [0, 1], "label": (K,)}`` for NIH /
  CheXpert / LUNA candidates / MedMNIST.
- :class:`SegmentationCases`: ``{"image": (C, *P), "mask": (R, *P)}`` with one mask channel
  per evaluated region (BraTS WT / TC / ET, LiTS liver): random patches for training
  (foreground-biased, as nnU-Net-style samplers do), whole volumes for evaluation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial

import numpy as np
import torch
from torch.utils.data import Dataset

from pcrl_lib.data.prepared import PreparedDataset
from pcrl_lib.data.preprocess import crop_centered


def to_float(image: np.ndarray, window: Sequence[float] | None = None) -> np.ndarray:
    """A stored image as float32 network input: uint8 -> [0, 1]; int16 HU clipped to
    ``window`` -> [0, 1]; float (z-scored MRI) unchanged."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if np.issubdtype(image.dtype, np.integer):
        if window is None:
            raise ValueError(
                "integer (HU) images need the HU window their dataset was prepared with"
            )
        lo, hi = window
        return (np.clip(image.astype(np.float32), lo, hi) - lo) / (hi - lo)
    return image.astype(np.float32)


def _window(data: PreparedDataset) -> tuple[float, float] | None:
    w = data.info.get("params", {}).get("window")
    return tuple(w) if w is not None else None


def _load_raw(data: PreparedDataset, case_id: str, channels: int | None) -> np.ndarray:
    return _as_float(data.load(case_id)["image"], channels)


def _as_float(image: np.ndarray, channels: int | None) -> np.ndarray:
    image = (
        image.astype(np.float32) if image.dtype != np.uint8 else image.astype(np.float32) / 255.0
    )
    return (
        np.repeat(image[:1], channels, axis=0) if channels and image.shape[0] != channels else image
    )


def pretraining_images(
    data: PreparedDataset, ids: Sequence[str], channels: int | None = None
) -> list[Callable[[], np.ndarray]]:
    """One zero-argument loader per case returning its raw ``image`` as float32 (HU for CT,
    [0, 1] for 8-bit images), loaded lazily inside DataLoader workers; grey images are
    repeated to ``channels`` (3 for the 2D ResNet-18 stem)."""
    return [partial(_load_raw, data, i, channels) for i in ids]


def _load_located(data: PreparedDataset, case_id: str, channels: int | None) -> dict:
    arrays = data.load(case_id)  # once: image and frame from the same file read
    return {"image": _as_float(arrays["image"], channels), "frame": arrays.get("frame")}


def located_images(
    data: PreparedDataset, ids: Sequence[str], channels: int | None = None
) -> list[Callable[[], dict]]:
    """As :func:`pretraining_images`, each loader returning ``{"image", "frame"}``: the
    case's location frame as preparation recorded it (:mod:`pcrl_lib.data.location`;
    ``None`` where it recorded none - the method then uses the image's own extent)."""
    return [partial(_load_located, data, i, channels) for i in ids]


HU_WINDOW = (-1000.0, 1000.0)  # the paper's pre-training window for CT (Sec. 4.3)
ZSCORE_WINDOW = (-3.0, 3.0)  # z-scored MRI: +-3 standard deviations of the brain


def pretraining_window(data: PreparedDataset, case_id: str) -> tuple[float, float] | None:
    """The intensity window pre-training maps to [0, 1], by how the modality is stored:
    CT as int16 HU -> the paper's [-1000, 1000] HU; MRI as z-scored floats (BraTS) -> +-3
    standard deviations (never the CT window, which would flatten it to 0.5); 8-bit images
    (X-rays, MedMNIST), already in [0, 1] when loaded -> ``None`` (unchanged)."""
    image = data.load(case_id)["image"]
    if image.dtype == np.uint8:
        return None
    if np.issubdtype(image.dtype, np.integer):
        return HU_WINDOW
    return ZSCORE_WINDOW


class ClassificationCases(Dataset):
    """Classification samples of prepared cases.

    Args:
        data: the prepared dataset. ids: its cases to use.
        labels: manifest columns used as targets (default: ``info["params"]["labels"]``,
            else ``["label"]``).
        channels: repeat a grey image to this many channels (3 for ImageNet-style ResNets).
    """

    def __init__(
        self,
        data: PreparedDataset,
        ids: Sequence[str],
        labels: Sequence[str] | None = None,
        channels: int = 1,
    ) -> None:
        self.data, self.ids, self.channels = data, list(ids), channels
        self.label_names = list(labels or data.info.get("params", {}).get("labels") or ["label"])
        self.targets = data.columns(self.ids, self.label_names)
        self.window = _window(data)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image = to_float(self.data.load(self.ids[index])["image"], self.window)
        if image.shape[0] != self.channels:
            image = np.repeat(image[:1], self.channels, axis=0)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image)),
            "label": torch.tensor(self.targets[index]),
        }


class SegmentationCases(Dataset):
    """Segmentation samples: image and one binary mask channel per region.

    Args:
        data, ids: the prepared dataset and its cases.
        regions: region name -> label values, e.g. ``BRATS_REGIONS`` or ``{"liver": (1, 2)}``.
        patch_size: training patch; ``None`` returns whole volumes (evaluation).
        samples_per_case: patches drawn per case and epoch (the dataset's length multiplies).
        foreground_prob: chance a patch is centred on a labelled voxel.
    """

    def __init__(
        self,
        data: PreparedDataset,
        ids: Sequence[str],
        regions: Mapping[str, Sequence[int]],
        patch_size: Sequence[int] | None = None,
        samples_per_case: int = 1,
        foreground_prob: float = 0.67,
    ) -> None:
        self.data, self.ids, self.regions = data, list(ids), dict(regions)
        self.patch_size = tuple(patch_size) if patch_size is not None else None
        self.samples_per_case, self.foreground_prob = samples_per_case, foreground_prob
        self.window = _window(data)

    def __len__(self) -> int:
        return len(self.ids) * (self.samples_per_case if self.patch_size else 1)

    def region_masks(self, labels: np.ndarray) -> np.ndarray:
        """``(1, *S)`` label map -> ``(R, *S)`` float32 region masks."""
        return np.concatenate([np.isin(labels, v) for v in self.regions.values()]).astype(
            np.float32
        )

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        case = self.data.load(self.ids[index % len(self.ids)])
        image, labels = to_float(case["image"], self.window), case["mask"]
        if self.patch_size is not None:
            spatial = labels.shape[1:]
            fg = (
                np.argwhere(labels[0] > 0)
                if torch.rand(()) < self.foreground_prob
                else np.empty((0, 3))
            )
            if len(fg):
                center = fg[int(torch.randint(len(fg), ()))]
            else:
                center = [int(torch.randint(n, ())) for n in spatial]
            image = np.stack(
                [crop_centered(c, center, self.patch_size, float(c.flat[0])) for c in image]
            )
            labels = crop_centered(labels[0], center, self.patch_size, 0)[None]
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image)),
            "mask": torch.from_numpy(self.region_masks(labels)),
        }
