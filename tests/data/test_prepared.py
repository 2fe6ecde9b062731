"""The prepared format: round trip, completeness marker, splits, datasets on top."""

import numpy as np
import pytest
import torch

from pcrl_lib.data.datasets import (
    ClassificationCases,
    SegmentationCases,
    pretraining_images,
    to_float,
)
from pcrl_lib.data.prepare import prepare
from pcrl_lib.data.prepared import PreparedDataset, PreparedWriter
from pcrl_lib.metrics import BRATS_REGIONS


def test_round_trip_and_prepare_json_written_last(tmp_path):
    w = PreparedWriter(tmp_path / "d", "toy", "test", {"window": [-1000, 1000]})
    for k in range(4):
        w.add(f"c{k}", f"p{k // 2}", {"label": k % 2}, image=np.full((1, 2, 2, 2), k, np.int16))
    assert not (tmp_path / "d" / "prepare.json").exists()  # incomplete until finish
    with pytest.raises(ValueError, match="repeated case id"):
        w.add("c1", "p0", image=np.zeros(1))
    with pytest.raises(ValueError, match="NaN"):
        w.add("c9", "p9", image=np.array([np.nan]))
    with pytest.raises(ValueError, match="unknown cases"):
        w.finish({"train": ["c0", "zz"]})
    w.finish({"train": ["c0", "c1"], "val": ["c2"], "test": ["c3"]})
    d = PreparedDataset(tmp_path / "d")
    assert d.name == "toy" and d.info["cases"] == 4 and d.info["code_version"].startswith("0.")
    assert d.load("c3")["image"].max() == 3
    assert d.columns(["c1", "c2"], ["label"]).tolist() == [[1.0], [0.0]]
    assert d.splits()["val"] == ["c2"]


def test_to_float_ranges():
    assert to_float(np.array([0, 255], np.uint8)).tolist() == [0.0, 1.0]
    assert to_float(np.array([-1000, 0, 1000], np.int16), (-1000, 1000)).tolist() == [0.0, 0.5, 1.0]
    with pytest.raises(ValueError, match="window"):
        to_float(np.array([1], np.int16))


def test_datasets_on_synthetic_data(tmp_path):
    (nih,) = prepare("synthetic-nih", tmp_path / "nih", n=10, size=32)
    data = PreparedDataset(nih)
    ds = ClassificationCases(data, data.manifest.index[:4], channels=3)
    item = ds[0]
    assert item["image"].shape == (3, 32, 32) and item["label"].shape == (14,)
    assert item["image"].min() >= 0 and item["image"].max() <= 1

    (brats,) = prepare("synthetic-brats", tmp_path / "brats", n=3, shape=(40, 40, 32))
    data = PreparedDataset(brats)
    ids = list(data.manifest.index)
    torch.manual_seed(0)
    patch = SegmentationCases(
        data, ids, BRATS_REGIONS, (16, 16, 8), samples_per_case=3, foreground_prob=1.0
    )
    assert len(patch) == 9
    item = patch[0]
    assert item["image"].shape == (4, 16, 16, 8) and item["mask"].shape == (3, 16, 16, 8)
    assert item["mask"][0].sum() > 0  # centred on the tumour
    assert (item["mask"][2] <= item["mask"][1]).all() and (item["mask"][1] <= item["mask"][0]).all()
    whole = SegmentationCases(data, ids, BRATS_REGIONS)[1]
    assert (
        whole["image"].shape[1:] == whole["mask"].shape[1:] == data.load(ids[1])["mask"].shape[1:]
    )

    (luna_v, _) = prepare(
        "synthetic-luna", tmp_path / "luna", n=3, shape=(48, 48, 32), spacing=(3.0, 3.0, 4.0)
    )
    vols = PreparedDataset(luna_v)
    loader = pretraining_images(vols, list(vols.manifest.index))[0]
    image = loader()
    assert image.dtype == np.float32 and image.min() >= -1000 and image.max() <= 1000  # HU
