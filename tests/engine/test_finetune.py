import json

import pytest
import torch
from torch.utils.data import Dataset

from pcrl_lib.engine.finetune import (
    FinetuneConfig,
    evaluate,
    finetune,
    task_loss,
    write_run_record,
)
from pcrl_lib.models.downstream import Classifier, SegmentationUNet


class Blobs(Dataset):
    """16^3 volumes; label 1 when a bright 6^3 cube is present; its mask for segmentation."""

    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.items = []
        for i in range(n):
            x = 0.1 * torch.randn(1, 16, 16, 16, generator=g)
            mask = torch.zeros(1, 16, 16, 16)
            if i % 2:
                a, b, c = torch.randint(0, 10, (3,), generator=g).tolist()
                mask[:, a : a + 6, b : b + 6, c : c + 6] = 1
                x = x + mask
            self.items.append({"image": x, "label": torch.tensor([float(i % 2)]), "mask": mask})

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def test_classifier_learns_and_best_epoch_is_kept(tmp_path):
    torch.manual_seed(0)
    model = Classifier(3, 1, 1, depth=3, width=0.125)
    cfg = FinetuneConfig(task="classification", epochs=6, batch_size=8, lr=0.05)
    result = finetune(model, Blobs(32, 0), Blobs(16, 1), cfg, tmp_path)
    vals = [h["val"] for h in result["history"]]
    assert result["best_val"] == max(vals) and result["best_epoch"] == vals.index(max(vals))
    assert result["best_val"] > 0.9
    # the model holds the best epoch's weights
    assert evaluate(model, Blobs(16, 1), cfg)["mean"] == pytest.approx(result["best_val"])
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 6


def test_segmentation_dice_improves(tmp_path):
    torch.manual_seed(0)
    model = SegmentationUNet(3, 1, 1, depth=3, width=0.125)
    cfg = FinetuneConfig(task="segmentation", epochs=8, batch_size=8, lr=0.05)
    result = finetune(model, Blobs(32, 0), Blobs(16, 1), cfg, tmp_path)
    assert result["best_val"] > result["history"][0]["val"]
    assert len(evaluate(model, Blobs(4, 2), cfg, ["liver"])["per_case"]["dice"]) == 4


def test_task_losses_hand_values():
    logits = torch.tensor([[0.0], [0.0]])
    assert task_loss(
        "classification", logits, torch.tensor([[1.0], [0.0]])
    ).item() == pytest.approx(0.6931, abs=1e-4)
    big = torch.full((1, 1, 2, 2), 20.0)
    assert task_loss("segmentation", big, torch.ones(1, 1, 2, 2)).item() == pytest.approx(
        0.0, abs=1e-4
    )
    with pytest.raises(ValueError, match="task"):
        FinetuneConfig(task="detection")


def test_run_record_is_complete_and_atomic(tmp_path):
    path = write_run_record(
        tmp_path / "runs" / "r.json",
        table="table5",
        task="luna_fp",
        protocol="semi",
        method="PCRLv2",
        label_ratio=0.1,
        seed=0,
        metrics={"mean": 0.9},
        config=FinetuneConfig(),
        wall_time_s=1.0,
    )
    rec = json.loads(path.read_text())
    assert rec["config"]["task"] == "classification" and rec["code_version"].startswith("0.1.0")
    with pytest.raises(ValueError, match="missing fields"):
        write_run_record(tmp_path / "bad.json", table="t")
