"""Bad input stops with an error that names the file and the problem - never a silent skip."""

import gzip

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from pcrl_lib.data.prepare import prepare
from pcrl_lib.data.prepared import PreparedDataset
from tests.data import fixtures


def _nifti_like(path, arr):
    ref = nib.load(str(path))
    nib.save(nib.Nifti1Image(arr, ref.affine), str(path))


def test_missing_raw_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="raw folder .*nowhere"):
        prepare("lits", tmp_path / "out", raw=tmp_path / "nowhere")


def test_luna_missing_csv(tmp_path):
    raw = fixtures.write_luna(tmp_path / "raw", 1)
    (raw / "candidates_V2.csv").unlink()
    with pytest.raises(FileNotFoundError, match="candidates_V2.csv"):
        prepare("luna", tmp_path / "out", raw=raw)


def test_luna_corrupt_raw_file(tmp_path):
    raw = fixtures.write_luna(tmp_path / "raw", 1)
    data = next(raw.glob("subset*/*.raw"))
    data.write_bytes(data.read_bytes()[:100])  # truncated
    with pytest.raises(ValueError, match=r"\.mhd: unreadable volume"):
        prepare("luna", tmp_path / "out", raw=raw)


def test_luna_misnamed_csv_column(tmp_path):
    raw = fixtures.write_luna(tmp_path / "raw", 1)
    table = pd.read_csv(raw / "candidates_V2.csv").rename(columns={"class": "label"})
    table.to_csv(raw / "candidates_V2.csv", index=False)
    with pytest.raises(ValueError, match=r"candidates_V2.csv: missing column\(s\) \['class'\]"):
        prepare("luna", tmp_path / "out", raw=raw)


def test_luna_candidate_outside_its_volume(tmp_path):
    raw = fixtures.write_luna(tmp_path / "raw", 1)
    table = pd.read_csv(raw / "candidates_V2.csv")
    table.loc[0, "coordX"] = 1e4
    table.to_csv(raw / "candidates_V2.csv", index=False)
    with pytest.raises(ValueError, match=r"\.mhd: candidate\(s\) outside the volume"):
        prepare("luna", tmp_path / "out", raw=raw)


def test_nih_empty_csv(tmp_path):
    raw = fixtures.write_nih(tmp_path / "raw")
    (raw / "Data_Entry_2017.csv").write_text("")
    with pytest.raises(ValueError, match="Data_Entry_2017.csv: unreadable CSV"):
        prepare("nih", tmp_path / "out", raw=raw)


def test_nih_unknown_finding_names_the_row(tmp_path):
    raw = fixtures.write_nih(tmp_path / "raw")
    table = pd.read_csv(raw / "Data_Entry_2017.csv")
    table.loc[2, "Finding Labels"] = "Hernia|Pneumonitis"
    table.to_csv(raw / "Data_Entry_2017.csv", index=False)
    with pytest.raises(
        ValueError, match="Data_Entry_2017.csv row 4: unknown finding 'Pneumonitis'"
    ):
        prepare("nih", tmp_path / "out", raw=raw)


def test_nih_missing_and_corrupt_image(tmp_path):
    raw = fixtures.write_nih(tmp_path / "raw")
    (raw / "images" / "00000002_000.png").unlink()
    with pytest.raises(
        FileNotFoundError,
        match=r"1 image\(s\) listed in Data_Entry_2017.csv are missing.*00000002_000",
    ):
        prepare("nih", tmp_path / "out", raw=raw)
    (raw / "images" / "00000002_000.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="00000002_000.png: unreadable image"):
        prepare("nih", tmp_path / "out", raw=raw)


def test_chexpert_bad_label_value(tmp_path):
    raw = fixtures.write_chexpert(tmp_path / "CheXpert-v1.0-small")
    table = pd.read_csv(raw / "train.csv")
    table.loc[1, "Edema"] = 2.0
    table.to_csv(raw / "train.csv", index=False)
    with pytest.raises(
        ValueError, match="train.csv: column 'Edema' has values other than 1, 0, -1 or blank, row 3"
    ):
        prepare("chexpert", tmp_path / "out", raw=raw)


def test_brats_missing_modality(tmp_path):
    raw = fixtures.write_brats(tmp_path / "raw", 2)
    next(raw.rglob("*_t1ce.nii.gz")).unlink()
    with pytest.raises(FileNotFoundError, match=r"no \*_t1ce.nii"):
        prepare("brats", tmp_path / "out", raw=raw)


def test_brats_unexpected_label(tmp_path):
    raw = fixtures.write_brats(tmp_path / "raw", 2)
    seg_path = next(raw.rglob("*_seg.nii.gz"))
    seg = np.asarray(nib.load(str(seg_path)).dataobj).copy()
    seg[0, 0, 0] = 3  # BraTS has no label 3
    _nifti_like(seg_path, seg)
    with pytest.raises(ValueError, match=r"_seg.nii.gz: unexpected label values \[3\]"):
        prepare("brats", tmp_path / "out", raw=raw)


def test_brats_shape_mismatch(tmp_path):
    raw = fixtures.write_brats(tmp_path / "raw", 2)
    t2 = next(raw.rglob("*_t2.nii.gz"))
    _nifti_like(t2, np.random.default_rng(0).normal(size=(24, 24, 19)).astype(np.float32))
    with pytest.raises(
        ValueError,
        match=r"_t2.nii.gz and .*_seg.nii.gz do not overlay: shape \(24, 24, 19\) vs \(24, 24, 20\)",
    ):
        prepare("brats", tmp_path / "out", raw=raw)


def test_brats_nan_voxels(tmp_path):
    raw = fixtures.write_brats(tmp_path / "raw", 2)
    flair = next(raw.rglob("*_flair.nii.gz"))
    arr = np.asarray(nib.load(str(flair)).dataobj).astype(np.float32)
    arr[5, 5, 5] = np.nan
    _nifti_like(flair, arr)
    with pytest.raises(ValueError, match=r"_flair.nii.gz: 1 NaN/Inf voxels"):
        prepare("brats", tmp_path / "out", raw=raw)


def test_lits_spacing_mismatch(tmp_path):
    raw = fixtures.write_lits(tmp_path / "raw", 1)
    seg = raw / "segmentation-0.nii"
    img = nib.load(str(seg), mmap=False)
    nib.save(
        nib.Nifti1Image(np.asarray(img.dataobj).copy(), np.diag([0.8, 0.8, 5.0, 1.0])), str(seg)
    )
    with pytest.raises(
        ValueError, match=r"volume-0.nii and .*segmentation-0.nii do not overlay: spacing"
    ):
        prepare("lits", tmp_path / "out", raw=raw)


def test_lits_missing_segmentation_and_corrupt_volume(tmp_path):
    raw = fixtures.write_lits(tmp_path / "raw", 2)
    (raw / "segmentation-1.nii").unlink()
    with pytest.raises(FileNotFoundError, match="volume-1.nii: no matching segmentation-1.nii"):
        prepare("lits", tmp_path / "out", raw=raw)
    (raw / "volume-1.nii").unlink()
    (raw / "volume-0.nii").write_bytes(gzip.compress(b"garbage"))
    with pytest.raises(ValueError, match="volume-0.nii: unreadable NIfTI"):
        prepare("lits", tmp_path / "out", raw=raw)


def test_lits_without_liver(tmp_path):
    raw = fixtures.write_lits(tmp_path / "raw", 1)
    _nifti_like(raw / "segmentation-0.nii", np.zeros((20, 20, 80), np.uint8))
    with pytest.raises(ValueError, match="segmentation-0.nii: no liver voxels"):
        prepare("lits", tmp_path / "out", raw=raw)


def test_medmnist_missing_array(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    np.savez(raw / "chestmnist.npz", train_images=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="chestmnist.npz: missing array"):
        prepare("medmnist", tmp_path / "out", raw=raw)


def test_prepared_case_missing_or_corrupt(tmp_path):
    (root,) = prepare("synthetic-nih", tmp_path / "nih", n=12, size=32)
    data = PreparedDataset(root)
    first, second = data.manifest.index[:2]
    (root / "cases" / f"{first}.npz").unlink()
    with pytest.raises(FileNotFoundError, match=f"{first}.npz: listed in manifest.csv but missing"):
        data.load(first)
    (root / "cases" / f"{second}.npz").write_bytes(b"PK\x03\x04broken")
    with pytest.raises(ValueError, match=f"{second}.npz: corrupt case file"):
        data.load(second)
    with pytest.raises(FileNotFoundError, match="not a prepared dataset"):
        PreparedDataset(tmp_path)
