"""Malformed and unusual inputs, class by class (issue "Real data without surprises"):
orientation, silent skips, labels, options, atomic re-preparation, batches of one. Each
test writes its small input and asserts the outcome and the message."""

import json

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch

from pcrl_lib.cli import main
from pcrl_lib.data.prepare import prepare, validate_options
from pcrl_lib.data.prepared import PreparedDataset
from pcrl_lib.data.readers import read_itk, read_nifti
from tests.data import fixtures

# ------------------------------------------------------------------ orientation


def _canonical_array():
    return np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)  # (X, Y, Z), LPS+


def _write_itk(path, xyz, direction, origin, spacing=(1.0, 1.0, 1.0)):
    img = sitk.GetImageFromArray(np.transpose(xyz, (2, 1, 0)))  # SimpleITK wants (Z, Y, X)
    img.SetDirection(tuple(np.asarray(direction, float).ravel()))
    img.SetOrigin(origin)
    img.SetSpacing(spacing)
    sitk.WriteImage(img, str(path))


def test_itk_flipped_and_permuted_scans_read_as_the_canonical_one(tmp_path):
    a = _canonical_array()
    _write_itk(tmp_path / "canon.mhd", a, np.eye(3), (0.0, 0.0, 0.0))
    # stored mirrored along x: voxel i holds canonical x = 3 - i; axis 0 runs to the right
    _write_itk(tmp_path / "flip.mhd", a[::-1], np.diag([-1, 1, 1]), (3.0, 0.0, 0.0))
    # a "coronal" storage: array axes (X, Z, Y), direction columns permuted to match
    perm = np.array([[1, 0, 0], [0, 0, 1], [0, 1, 0]])
    _write_itk(tmp_path / "perm.mhd", np.transpose(a, (0, 2, 1)), perm, (0.0, 0.0, 0.0), (1, 2, 3))
    canon = read_itk(tmp_path / "canon.mhd")
    for name in ("flip", "perm"):
        v = read_itk(tmp_path / f"{name}.mhd")
        assert np.array_equal(v.array, canon.array), name  # voxel for voxel
        assert np.allclose(v.direction, np.eye(3)) and np.allclose(v.origin, canon.origin)
    assert read_itk(tmp_path / "perm.mhd").spacing == (1.0, 3.0, 2.0)
    # world coordinates keep pointing at the same voxel
    world = np.array([[2.0, 1.0, 4.0]])
    assert np.allclose(read_itk(tmp_path / "flip.mhd").world_to_voxel(world), [[2, 1, 4]])


def _write_nifti(path, xyz, affine):
    nib.save(nib.Nifti1Image(xyz, affine), str(path))


def test_nifti_flipped_and_permuted_volumes_read_as_the_canonical_one(tmp_path):
    a = _canonical_array()
    lps = np.diag([-1.0, -1.0, 1.0, 1.0])  # LPS+ voxel axes in NIfTI's RAS world
    _write_nifti(tmp_path / "canon.nii", a, lps)
    ras = np.diag([1.0, 1.0, 1.0, 1.0])  # stored RAS+: x and y mirrored against LPS+
    ras[:3, 3] = [-3.0, -4.0, 0.0]
    _write_nifti(tmp_path / "ras.nii", a[::-1, ::-1], ras)
    perm = np.array([[-1.0, 0, 0, 0], [0, 0, -1.0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1]])
    _write_nifti(tmp_path / "perm.nii", np.transpose(a, (0, 2, 1)), perm)
    canon = read_nifti(tmp_path / "canon.nii")
    for name in ("ras", "perm"):
        v = read_nifti(tmp_path / f"{name}.nii")
        assert np.array_equal(v.array, canon.array), name
        assert np.allclose(v.direction, canon.direction) and np.allclose(v.origin, canon.origin)


def test_luna_candidates_of_a_mirrored_scan_are_the_same_crops(tmp_path):
    raw = fixtures.write_luna(tmp_path / "raw", 3)
    prepare("luna", tmp_path / "plain", raw=raw, crop=16)
    mhd = next(raw.glob("subset*/*.mhd"))
    img = sitk.ReadImage(str(mhd))
    arr = sitk.GetArrayFromImage(img)[:, :, ::-1]  # x reversed in storage
    flipped = sitk.GetImageFromArray(arr)
    flipped.SetSpacing(img.GetSpacing())
    width = (arr.shape[2] - 1) * img.GetSpacing()[0]
    flipped.SetOrigin((img.GetOrigin()[0] + width, *img.GetOrigin()[1:]))
    flipped.SetDirection((-1, 0, 0, 0, 1, 0, 0, 0, 1))
    sitk.WriteImage(flipped, str(mhd))
    prepare("luna", tmp_path / "mirrored", raw=raw, crop=16)
    a = PreparedDataset(tmp_path / "plain" / "candidates")
    b = PreparedDataset(tmp_path / "mirrored" / "candidates")
    for case in a.manifest.index:
        assert np.array_equal(a.load(case)["image"], b.load(case)["image"]), case


def test_a_mask_whose_affine_is_mirrored_does_not_overlay_its_image(tmp_path):
    raw = fixtures.write_lits(tmp_path / "raw", 1)
    seg = raw / "segmentation-0.nii"
    img = nib.load(str(seg))
    affine = img.affine.copy()
    affine[0, 0] *= -1  # an x-flipped header on the same voxels
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj).copy(), affine), str(seg))
    with pytest.raises(ValueError, match=r"volume-0.nii and .*segmentation-0.nii do not overlay"):
        prepare("lits", tmp_path / "out", raw=raw)


def test_a_contrast_stored_mirrored_is_combined_in_the_others_orientation(tmp_path):
    raw = fixtures.write_brats(tmp_path / "raw", 3)
    plain = prepare("brats", tmp_path / "plain", raw=raw)[0]
    flair = next(raw.rglob("*_flair.nii.gz"))
    img = nib.load(str(flair))
    affine = img.affine.copy()
    affine[0, 0], affine[0, 3] = -1.0, 23.0  # stored right-to-left, the header saying so
    data = np.asarray(img.dataobj)[::-1].copy()
    nib.save(nib.Nifti1Image(data, affine), str(flair))
    mirrored = prepare("brats", tmp_path / "mirrored", raw=raw)[0]
    case = flair.parent.name
    a, b = PreparedDataset(plain).load(case), PreparedDataset(mirrored).load(case)
    assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["mask"], b["mask"])
    # the same voxels under a header that does not say so: refused, both files named
    affine[0, 3] = 0.0
    nib.save(nib.Nifti1Image(data, affine), str(flair))
    with pytest.raises(ValueError, match=r"_flair.nii.gz and .*_seg.nii.gz do not overlay: origin"):
        prepare("brats", tmp_path / "bad", raw=raw)


# ------------------------------------------------------------- nothing disappears


def test_a_brats_subject_without_its_flair_is_an_error_or_a_listed_exclusion(tmp_path):
    raw = fixtures.write_brats(tmp_path / "raw", 4)
    lost = next(raw.rglob("*_flair.nii.gz"))
    lost.unlink()
    with pytest.raises(FileNotFoundError, match=rf"{lost.parent.name}: incomplete BraTS subject"):
        prepare("brats", tmp_path / "out", raw=raw)
    root = prepare("brats", tmp_path / "out", raw=raw, exclude_incomplete=True)[0]
    info = json.loads((root / "prepare.json").read_text())
    assert info["cases"] == 3 and len(info["excluded"]) == 1
    assert (
        lost.parent.name in info["excluded"][0]["case"] and "flair" in info["excluded"][0]["reason"]
    )


def test_a_lits_segmentation_without_its_volume_is_not_ignored(tmp_path):
    raw = fixtures.write_lits(tmp_path / "raw", 4)
    (raw / "volume-1.nii").unlink()
    with pytest.raises(FileNotFoundError, match="segmentation-1.nii: no matching volume-1.nii"):
        prepare("lits", tmp_path / "out", raw=raw)
    root = prepare("lits", tmp_path / "out", raw=raw, exclude_incomplete=True)[0]
    assert json.loads((root / "prepare.json").read_text())["excluded"][0]["case"].endswith(
        "segmentation-1.nii"
    )


def test_a_non_numeric_lits_name_is_named(tmp_path):
    raw = fixtures.write_lits(tmp_path / "raw", 1)
    (raw / "volume-0.nii").rename(raw / "volume-abc.nii")
    with pytest.raises(ValueError, match="volume-abc.nii: LiTS files are named volume-N.nii"):
        prepare("lits", tmp_path / "out", raw=raw)


# ---------------------------------------------------------------------- labels


@pytest.mark.parametrize("value, shown", [(1.5, "1.5"), (0.45, "0.4499")])
def test_float_labels_are_checked_before_any_cast(tmp_path, value, shown):
    raw = fixtures.write_lits(tmp_path / "raw", 1)
    seg = raw / "segmentation-0.nii"
    img = nib.load(str(seg))
    arr = np.asarray(img.dataobj).astype(np.float32)
    arr[6, 6, 35] = value  # would become 1 or 0 after a cast
    nib.save(nib.Nifti1Image(arr, img.affine), str(seg))
    with pytest.raises(
        ValueError, match=rf"segmentation-0.nii: non-integer label values \[{shown}"
    ):
        prepare("lits", tmp_path / "out", raw=raw)


# --------------------------------------------------------------------- options


@pytest.mark.parametrize(
    "dataset, options, match",
    [
        ("chexpert", {"frontal_only": "maybe"}, "frontal_only='maybe' must be true or false"),
        ("lits", {"margin": -3}, "margin=-3 must be >= 0"),
        ("synthetic-nih", {"n": -5}, "n=-5 must be >= 1"),
        ("synthetic-nih", {"n": 2.5}, "n=2.5 must be an integer"),
        ("nih", {"split": "offical"}, r"split='offical' must be one of \['paper', 'official'\]"),
        ("synthetic-lits", {"fractions": (0.5, 0.5, 0.5)}, "sum to 1"),
        ("synthetic-lits", {"shape": (96, 96)}, "list of 3 numbers"),
    ],
)
def test_options_are_typed_and_checked_before_any_work(dataset, options, match):
    with pytest.raises(ValueError, match=match):
        validate_options(dataset, options)


def test_boolean_options_read_their_strings():
    assert validate_options("chexpert", {"frontal_only": "False"}) == {"frontal_only": False}
    assert validate_options("chexpert", {"frontal_only": "yes"}) == {"frontal_only": True}


def test_a_misspelt_split_stops_before_any_image_is_converted(tmp_path):
    raw = fixtures.write_nih(tmp_path / "raw")
    with pytest.raises(ValueError, match="split='offical'"):
        prepare("nih", tmp_path / "out", raw=raw, split="offical")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------ atomic, exit codes


def test_a_failed_re_prepare_leaves_the_good_folder_and_fewer_cases_leave_no_stale_files(tmp_path):
    out = tmp_path / "out"
    raw = fixtures.write_lits(tmp_path / "raw", 5)
    prepare("lits", out, raw=raw)
    before = sorted(p.name for p in (out / "cases").iterdir())
    (raw / "volume-4.nii").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="volume-4.nii"):
        prepare("lits", out, raw=raw)
    assert (out / "prepare.json").is_file()
    assert sorted(p.name for p in (out / "cases").iterdir()) == before
    for k in (3, 4):
        (raw / f"volume-{k}.nii").unlink()
        (raw / f"segmentation-{k}.nii").unlink()
    prepare("lits", out, raw=raw)
    assert sorted(p.name for p in (out / "cases").iterdir()) == [
        f"lits000{k}.npz" for k in range(3)
    ]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no leftovers


def test_cli_errors_exit_2_naming_the_path(tmp_path, capsys):
    target = tmp_path / "a_file"
    target.write_text("not a folder")
    assert main(["prepare", "synthetic-nih", "--out", str(target), "--option", "n=4"]) == 2
    assert "a_file is a file" in capsys.readouterr().err
    out = tmp_path / "ds"
    prepare("synthetic-nih", out, n=6, size=32)
    case = next((out / "cases").iterdir())
    case.write_bytes(case.read_bytes()[:40])  # truncated
    with pytest.raises(ValueError, match=f"{case.name}: corrupt case file"):
        PreparedDataset(out).load(case.stem)


# -------------------------------------------------------------- batches of one


def test_a_final_batch_of_one_is_dropped_with_a_note(tmp_path):
    from pcrl_lib.data.phantom import phantom_ct
    from pcrl_lib.engine.pretrain import PretrainConfig, ViewDataset, pretrain
    from tests.engine.tiny_run import TinyRestorer, build

    _, data, cfg = build(epochs=1, method="restorer")
    images = [phantom_ct((48, 48, 40), seed=i) for i in range(3)]  # batch 2: 2 + 1
    torch.manual_seed(0)
    pretrain(TinyRestorer(), ViewDataset(images, data.generator), cfg, tmp_path / "three")
    lines = [json.loads(x) for x in (tmp_path / "three" / "log.jsonl").read_text().splitlines()]
    assert lines[0] == {"kind": "note", "text": "the final batch of one is dropped each epoch"}
    assert sum(x["kind"] == "step" for x in lines) == 1
    one = ViewDataset(images[:1], data.generator)
    with pytest.raises(ValueError, match="at least 2 images"):
        pretrain(TinyRestorer(), one, PretrainConfig(**cfg.__dict__), tmp_path / "one")


# ------------------------------------------------------------------ plausibility


def _replace_volume(raw, arr):
    path = raw / "volume-0.nii"
    nib.save(nib.Nifti1Image(arr, nib.load(str(path)).affine), str(path))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda a: np.zeros_like(a), "constant image"),
        (lambda a: np.full_like(a, -1000.0) + np.arange(a.size).reshape(a.shape) % 2, "air only"),
        (lambda a: np.clip(a + 1024, 0, 4095), "no voxel below -500 HU"),  # no intercept
        (lambda a: np.clip(a / 8 + 128, 0, 255).round(), "8-bit data"),  # an MRI as CT
    ],
)
def test_implausible_ct_volumes_are_named(tmp_path, make, match):
    raw = fixtures.write_lits(tmp_path / "raw", 3)
    arr = np.asarray(nib.load(str(raw / "volume-0.nii")).dataobj).astype(np.float32)
    _replace_volume(raw, make(arr).astype(np.float32))
    with pytest.raises(ValueError, match=f"volume-0.nii: .*{match}"):
        prepare("lits", tmp_path / "out", raw=raw)


def test_a_one_slice_volume_is_named(tmp_path):
    raw = fixtures.write_lits(tmp_path / "raw", 3)
    arr = np.random.default_rng(0).normal(-300, 400, (20, 20, 1)).astype(np.float32)
    _replace_volume(raw, arr)
    with pytest.raises(ValueError, match=r"volume-0.nii: \(20, 20, 1\) voxels - fewer than 8"):
        prepare("lits", tmp_path / "out", raw=raw)


def test_a_constant_mri_contrast_and_a_blank_xray_are_named(tmp_path):
    raw = fixtures.write_brats(tmp_path / "brats", 3)
    t1 = next(raw.rglob("*_t1.nii.gz"))
    nib.save(nib.Nifti1Image(np.zeros((24, 24, 20), np.float32), nib.load(str(t1)).affine), str(t1))
    with pytest.raises(ValueError, match=r"_t1.nii.gz: constant image"):
        prepare("brats", tmp_path / "out", raw=raw)
    from PIL import Image

    nih = fixtures.write_nih(tmp_path / "nih")
    png = next((nih / "images").glob("*.png"))
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(png)
    with pytest.raises(ValueError, match=rf"{png.name}: constant image"):
        prepare("nih", tmp_path / "out2", raw=nih)


def test_float_medmnist_arrays_are_refused_not_zeroed(tmp_path):
    raw = fixtures.write_medmnist(tmp_path / "raw", "chestmnist")
    path = next(raw.glob("*.npz"))
    arrays = dict(np.load(path))
    arrays["train_images"] = arrays["train_images"] / 255.0  # floats in [0, 1]
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=r"\(train_images\): float64 values in \[0, 1\]"):
        prepare("medmnist", tmp_path / "out", raw=raw, name="chestmnist")


def test_pretraining_maps_each_modality_with_its_own_window(tmp_path):
    from pcrl_lib.data.datasets import HU_WINDOW, ZSCORE_WINDOW, pretraining_window

    brats = prepare("synthetic-brats", tmp_path / "b", n=3, shape=(32, 32, 32))[0]
    luna = prepare("synthetic-luna", tmp_path / "l", n=3, shape=(48, 48, 32), crop=16)[0]
    nih = prepare("synthetic-nih", tmp_path / "n", n=6, size=32)[0]
    windows = {}
    for name, root in (("mri", brats), ("ct", luna), ("xray", nih)):
        data = PreparedDataset(root)
        windows[name] = pretraining_window(data, data.manifest.index[0])
    assert windows == {"mri": ZSCORE_WINDOW, "ct": HU_WINDOW, "xray": None}
    # z-scored MRI through the CT window would be flat; through its own it is not
    from pcrl_lib.pipeline import Intensity

    image = torch.from_numpy(PreparedDataset(brats).load("mri0000")["image"][:1].astype(np.float32))
    assert float(Intensity(HU_WINDOW)(image).std()) < 0.002
    assert float(Intensity(ZSCORE_WINDOW)(image).std()) > 0.05


# ---------------------------------------------------------------------- CSV files


def test_an_unparseable_coordinate_names_file_row_and_column(tmp_path):
    import pandas as pd

    raw = fixtures.write_luna(tmp_path / "raw", 3)
    table = pd.read_csv(raw / "candidates_V2.csv")
    table["coordY"] = table["coordY"].astype(object)
    table.loc[2, "coordY"] = "12,5"  # a decimal comma
    table.to_csv(raw / "candidates_V2.csv", index=False)
    with pytest.raises(
        ValueError, match=r"candidates_V2.csv: row 4, column coordY: '12,5' is not a number"
    ):
        prepare("luna", tmp_path / "out", raw=raw)


def test_a_duplicated_csv_row_names_both_rows(tmp_path):
    import pandas as pd

    raw = fixtures.write_nih(tmp_path / "raw")
    csv = raw / "Data_Entry_2017.csv"
    table = pd.read_csv(csv)
    pd.concat([table, table.iloc[[0]]]).to_csv(csv, index=False)
    first = table["Image Index"].iloc[0]
    with pytest.raises(
        ValueError, match=rf"Image Index '{first}' appears in rows \[2, {len(table) + 2}\]"
    ):
        prepare("nih", tmp_path / "out", raw=raw)
