import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from pcrl_lib.engine.finetune import (
    FinetuneConfig,
    evaluate,
    finetune,
    recalibrate_batch_norm,
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


def test_run_record_is_complete_and_atomic(tmp_path, monkeypatch):
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
    # complete: every field given, plus the code version and the time of writing
    assert {"table", "task", "protocol", "method", "label_ratio", "seed", "metrics", "config",
            "wall_time_s", "code_version", "written_at"} <= set(rec)  # fmt: skip
    with pytest.raises(ValueError, match="missing fields"):
        write_run_record(tmp_path / "bad.json", table="t")
    # atomic: a write that fails half-way (here: the disk fills after 10 bytes) leaves the
    # previous record whole and no temporary file behind
    before = path.read_bytes()
    real_write = Path.write_text

    def half_write(self, text, *args, **kwargs):
        real_write(self, text[:10], *args, **kwargs)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", half_write)
    with pytest.raises(OSError, match="No space left"):
        write_run_record(path, **{**rec, "metrics": {"mean": 0.1}})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["r.json"]


def test_recalibrate_batch_norm_averages_the_batch_statistics_of_one_pass():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2))
    bn = model[1]
    bn.running_mean.fill_(50.0)  # stale statistics, as after a few steps
    data = [{"image": torch.randn(1, 3, 3) * 3 + 1} for _ in range(8)]
    params = [p.detach().clone() for p in model.parameters()]
    recalibrate_batch_norm(model, data, FinetuneConfig(batch_size=4))
    with torch.no_grad():  # by hand: two batches of 4, their conv outputs' mean / variance
        outs = [model[0](torch.stack([d["image"] for d in data[i : i + 4]])) for i in (0, 4)]
    means = torch.stack([o.mean((0, 2, 3)) for o in outs])
    variances = torch.stack([o.transpose(0, 1).flatten(1).var(1) for o in outs])  # unbiased
    torch.testing.assert_close(bn.running_mean, means.mean(0))
    torch.testing.assert_close(bn.running_var, variances.mean(0))
    assert bn.momentum == 0.1 and int(bn.num_batches_tracked) == 2
    assert all(torch.equal(a, b) for a, b in zip(params, model.parameters(), strict=True))


def test_precise_bn_recalibrates_before_every_validation(tmp_path, monkeypatch):
    import pcrl_lib.engine.finetune as ft

    calls = []
    real = ft.recalibrate_batch_norm
    monkeypatch.setattr(ft, "recalibrate_batch_norm", lambda *a: calls.append(1) or real(*a))
    model = Classifier(3, 1, 1, depth=3, width=0.125)
    cfg = FinetuneConfig(epochs=4, batch_size=8, lr=0.05, eval_every=2, precise_bn=True)
    result = finetune(model, Blobs(16, 0), Blobs(8, 1), cfg, tmp_path)
    assert len(calls) == len(result["history"]) == 2
    finetune(model, Blobs(16, 0), Blobs(8, 1), replace(cfg, precise_bn=False), tmp_path)
    assert len(calls) == 2


def test_small_profiles_use_precise_bn_the_paper_profile_does_not():
    from pcrl_lib.engine.experiment import finetune_config
    from pcrl_lib.profiles import finetune_settings

    for task in ("luna", "nih", "brats", "lits"):
        assert finetune_config("classification", finetune_settings("demo", task)).precise_bn
        assert finetune_config("classification", finetune_settings("smoke", task)).precise_bn
        assert not finetune_config("classification", finetune_settings("paper", task)).precise_bn


def test_whole_volume_evaluation_batch_changes_nothing_but_speed(tmp_path):
    torch.manual_seed(0)
    model = SegmentationUNet(3, 1, 1, depth=3, width=0.125)
    cfg = FinetuneConfig(task="segmentation", epochs=1, batch_size=2, patch_size=(8, 8, 8))
    finetune(model, Blobs(8, 0), Blobs(4, 1), cfg, tmp_path)
    one_at_a_time = evaluate(model, Blobs(4, 2), replace(cfg, eval_batch_size=1))
    all_at_once = evaluate(model, Blobs(4, 2), replace(cfg, eval_batch_size=8))  # 8 patches/case
    assert all_at_once["per_case"] == one_at_a_time["per_case"]
    with pytest.raises(ValueError, match="eval_batch_size"):
        replace(cfg, eval_batch_size=0)
