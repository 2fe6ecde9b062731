"""Each real dataset's reader on tiny files written in its published format."""

import numpy as np
import pytest

from pcrl_lib.data.prepare import DATASETS, options_of, prepare
from pcrl_lib.data.prepared import PreparedDataset
from pcrl_lib.data.sources.xray import chexpert_labels, parse_nih_labels
from pcrl_lib.data.synthetic.xray import NIH_FINDINGS
from tests.data import fixtures


def _disjoint_and_complete(data: PreparedDataset) -> None:
    splits = data.splits()
    ids = sum(splits.values(), [])
    assert len(ids) == len(set(ids)) == len(data.manifest)


def test_luna_resamples_to_1mm_and_centres_candidates(tmp_path, capsys):
    raw = fixtures.write_luna(tmp_path / "raw")
    volumes, candidates = prepare("luna", tmp_path / "out", raw=raw, crop=16)
    # the candidate of a scan not downloaded is said, not hidden
    assert "1 candidates of 1 scans not under" in capsys.readouterr().out
    vol = PreparedDataset(volumes)
    image = vol.load(vol.manifest.index[0])["image"]
    # 64 x 0.75 mm -> 48 voxels; 16 x 2.5 mm -> 40 voxels at 1 mm; HU window [-1000, 1000]
    assert image.shape == (1, 48, 48, 40) and image.dtype == np.int16
    cand = PreparedDataset(candidates)
    assert sorted(cand.manifest["label"].tolist()) == [0, 0, 0, 1, 1, 1]
    for case_id, label in cand.manifest["label"].items():
        crop = cand.load(case_id)["image"][0]
        assert crop.shape == (16, 16, 16)
        centre = crop[7:9, 7:9, 7:9].mean()
        assert (centre > 0) == (label == 1)  # the 6 mm ball (100 HU) sits at the crop's centre
    assert cand.info["candidates_of_absent_scans"] == 1
    # candidates follow their scan's split
    where = {i: s for s, ids in vol.splits().items() for i in ids}
    for split, ids in cand.splits().items():
        assert all(where[cand.manifest.at[i, "patient"]] == split for i in ids)


def test_nih_labels_pipes_and_no_finding():
    labels = parse_nih_labels("Effusion|Mass", "x")
    assert labels[NIH_FINDINGS.index("Effusion")] == labels[NIH_FINDINGS.index("Mass")] == 1
    assert labels.sum() == 2
    assert parse_nih_labels("No Finding", "x").sum() == 0


def test_nih_prepare_paper_and_official_splits(tmp_path):
    raw = fixtures.write_nih(tmp_path / "raw")
    (root,) = prepare("nih", tmp_path / "paper", raw=raw, size=32)
    data = PreparedDataset(root)
    assert len(data.manifest) == 10
    assert data.load("00000003_000")["image"].shape == (1, 32, 32)  # the RGBA one too
    row = data.manifest.loc["00000001_000"]
    assert row["Cardiomegaly"] == 1 and row["Effusion"] == 1 and row["Mass"] == 0
    assert data.manifest.loc["00000001_001", list(NIH_FINDINGS)].sum() == 0
    _disjoint_and_complete(data)
    # patient 1's two images stay together
    where = {i: s for s, ids in data.splits().items() for i in ids}
    assert where["00000001_000"] == where["00000001_001"]
    (root,) = prepare("nih", tmp_path / "official", raw=raw, size=32, split="official")
    assert PreparedDataset(root).splits()["test"] == ["00000008_000", "00000009_000"]


@pytest.mark.parametrize(("policy", "expected"), [("ones", 1.0), ("zeros", 0.0), ("ignore", -1.0)])
def test_chexpert_uncertain_policy(tmp_path, policy, expected):
    raw = fixtures.write_chexpert(tmp_path / "CheXpert-v1.0-small")
    (root,) = prepare("chexpert", tmp_path / policy, raw=raw, size=32, uncertain=policy)
    data = PreparedDataset(root)
    assert len(data.manifest) == 8  # 6 + 2 frontal; the lateral views are left out
    assert (data.manifest["Atelectasis"] == expected).all()
    assert (data.manifest["Cardiomegaly"] == 1).all() and (data.manifest["Fracture"] == 0).all()


def test_chexpert_labels_blank_is_zero():
    import pandas as pd

    out = chexpert_labels(pd.DataFrame({"a": [1.0, np.nan, -1.0, 0.0]}), "zeros", "x")
    assert out[:, 0].tolist() == [1.0, 0.0, 0.0, 0.0]


def test_brats_keeps_label_4_and_normalises_each_modality(tmp_path):
    raw = fixtures.write_brats(tmp_path / "raw")
    (root,) = prepare("brats", tmp_path / "out", raw=raw)
    data = PreparedDataset(root)
    assert sorted(data.manifest.index) == [f"Brats18_TEST_{s}_1" for s in range(4)]  # HGG and LGG
    case = data.load("Brats18_TEST_0_1")
    assert case["image"].shape == (4, 18, 16, 16)  # cropped to the brain box
    assert set(np.unique(case["mask"])) == {0, 1, 2, 4}
    brain = case["image"].astype(np.float32)
    assert np.allclose(brain.mean(axis=(1, 2, 3)), 0, atol=0.01)
    assert np.allclose(brain.std(axis=(1, 2, 3)), 1, atol=0.01)


def test_lits_cuts_the_liver_slab_with_margin(tmp_path):
    raw = fixtures.write_lits(tmp_path / "raw")
    (root,) = prepare("lits", tmp_path / "out", raw=raw, margin=5)
    data = PreparedDataset(root)
    case = data.load("lits0000")
    assert case["image"].shape == (1, 20, 20, 30)  # liver slices 30-49 plus 5 on each side
    assert case["image"].min() >= -200 and case["image"].max() <= 200
    assert set(np.unique(case["mask"])) == {0, 1, 2}
    assert np.allclose(case["spacing"], (0.8, 0.8, 2.0))


def test_medmnist_one_hot_and_own_splits(tmp_path):
    raw = fixtures.write_medmnist(tmp_path / "raw", "organmnist3d", 28)
    (root,) = prepare("medmnist", tmp_path / "out", raw=raw, name="organmnist3d")
    data = PreparedDataset(root)
    assert {k: len(v) for k, v in data.splits().items()} == {"train": 6, "val": 2, "test": 3}
    labels = data.columns(data.manifest.index, data.info["params"]["labels"])
    assert labels.shape == (11, 11) and (labels.sum(axis=1) == 1).all()
    assert data.load("train000000")["image"].shape == (1, 28, 28, 28)


def test_every_dataset_is_documented_with_options():
    for name in DATASETS:
        assert "seed" in options_of(name) or name == "medmnist"
    with pytest.raises(ValueError, match="unknown dataset"):
        prepare("luna17", "x")
    with pytest.raises(ValueError, match="unknown option"):
        prepare("synthetic-nih", "x", sizes=3)
    with pytest.raises(ValueError, match="--raw"):
        prepare("lits", "x")
