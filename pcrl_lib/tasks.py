"""The paper's downstream tasks: which data, which model, which loss and metric.

=========  ==================  =================================  ===================  =========
task       data role           model                              loss / metric        tables
=========  ==================  =================================  ===================  =========
luna       luna (candidates)   3D classifier, 1 output            BCE / AUROC          V
nih        nih                 2D ResNet-18 classifier, 14 out    BCE / mean AUROC     I-IV, VI
brats      brats               3D U-Net with skips, 4 in, 3 out   Dice / WT, TC, ET    I, III, VII
lits       lits                3D U-Net with skips, 1 in, 1 out   Dice / liver Dice    I, VIII
=========  ==================  =================================  ===================  =========
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import nn
from torch.utils.data import Dataset

from pcrl_lib.data.datasets import ClassificationCases, SegmentationCases
from pcrl_lib.data.prepared import PreparedDataset
from pcrl_lib.metrics import BRATS_REGIONS
from pcrl_lib.models.downstream import Classifier, SegmentationUNet


@dataclass(frozen=True)
class Task:
    """One downstream task (see the module table)."""

    name: str
    kind: str  # "classification" | "segmentation"
    spatial_dims: int
    in_channels: int
    subfolder: str = ""  # inside the role's prepared folder (LUNA: "candidates")
    regions: tuple[tuple[str, tuple[int, ...]], ...] = ()

    def data(self, folder: str | Path) -> PreparedDataset:
        """The prepared dataset of this task inside the role's ``folder``."""
        return PreparedDataset(Path(folder) / self.subfolder if self.subfolder else folder)

    def class_names(self, data: PreparedDataset) -> list[str]:
        """Output names: the label columns, or the segmentation regions."""
        if self.kind == "segmentation":
            return [r for r, _ in self.regions]
        return list(data.info.get("params", {}).get("labels") or ["label"])

    def model(self, data: PreparedDataset, depth: int = 5, width: float = 1.0) -> nn.Module:
        """A freshly initialised downstream model (encoder to be filled by pre-training)."""
        n_out = len(self.class_names(data))
        if self.kind == "classification":
            return Classifier(self.spatial_dims, self.in_channels, n_out, depth=depth, width=width)
        return SegmentationUNet(
            self.spatial_dims, self.in_channels, n_out, depth=depth, width=width
        )

    def dataset(
        self,
        data: PreparedDataset,
        ids: Sequence[str],
        patch_size: Sequence[int] | None = None,
        samples_per_case: int = 1,
    ) -> Dataset:
        """Training (``patch_size`` given) or evaluation samples of ``ids``."""
        if self.kind == "classification":
            return ClassificationCases(data, ids, channels=self.in_channels)
        return SegmentationCases(data, ids, dict(self.regions), patch_size, samples_per_case)


TASKS: dict[str, Task] = {
    "luna": Task("luna", "classification", 3, 1, subfolder="candidates"),
    "nih": Task("nih", "classification", 2, 3),
    "brats": Task("brats", "segmentation", 3, 4, regions=tuple(BRATS_REGIONS.items())),
    "lits": Task("lits", "segmentation", 3, 1, regions=(("liver", (1, 2)),)),
}


def get_task(name: str) -> Task:
    """The task called ``name``; unknown names list the known ones."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name]
