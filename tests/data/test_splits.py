import pytest

from pcrl_lib.data.splits import (
    check_disjoint,
    read_splits,
    semi_supervised,
    split_by_patient,
    transfer,
    write_splits,
)

IDS = [f"p{p:03d}_img{k}" for p in range(50) for k in range(3)]  # 50 patients, 3 images each


def patient(i):
    return i.split("_")[0]


def test_by_patient_fractions_and_no_patient_on_two_sides():
    s = split_by_patient(IDS, patient, seed=1)
    patients = {k: {patient(i) for i in v} for k, v in s.items()}
    assert [len(patients[k]) for k in ("train", "val", "test")] == [35, 5, 10]
    assert not (
        patients["train"] & patients["val"]
        or patients["train"] & patients["test"]
        or patients["val"] & patients["test"]
    )
    assert sorted(sum(s.values(), [])) == sorted(IDS)


def test_by_patient_is_deterministic_and_seed_dependent():
    assert split_by_patient(IDS, patient, seed=3) == split_by_patient(IDS, patient, seed=3)
    assert split_by_patient(IDS, patient, seed=3) != split_by_patient(IDS, patient, seed=4)


def test_semi_supervised_first_rest_rule():
    train = [f"s{i}" for i in range(20)]
    s = semi_supervised(train, 0.1)
    assert s["labelled"] == ["s18", "s19"]  # the last 10 %: fine-tuning
    assert s["unlabelled"] == train[:18]  # the first 90 %: pre-training
    assert semi_supervised(train, 0.01)["labelled"] == ["s19"]  # at least one


def test_transfer_takes_the_first_fraction():
    assert transfer([f"t{i}" for i in range(10)], 0.3) == ["t0", "t1", "t2"]
    with pytest.raises(ValueError, match="label ratio"):
        transfer(["a"], 0.0)


def test_write_and_read_roundtrip(tmp_path):
    s = split_by_patient(IDS, patient)
    write_splits(tmp_path / "splits", s)
    assert read_splits(tmp_path / "splits") == s


def test_bad_split_files_are_named(tmp_path):
    with pytest.raises(ValueError, match="share 1 ids"):
        write_splits(tmp_path, {"train": ["a", "b"], "test": ["b"]})
    (tmp_path / "train.txt").write_text("a\nb\n")
    (tmp_path / "val.txt").write_text("c\n")
    with pytest.raises(FileNotFoundError, match="test.txt"):
        read_splits(tmp_path)
    (tmp_path / "test.txt").write_text("\n")
    with pytest.raises(ValueError, match="test.txt: empty"):
        read_splits(tmp_path)
    (tmp_path / "test.txt").write_text("a\n")
    with pytest.raises(ValueError, match="'train' and 'test'"):
        read_splits(tmp_path)


def test_bad_arguments():
    with pytest.raises(ValueError, match="duplicate"):
        split_by_patient(["a", "a"])
    with pytest.raises(ValueError, match="fractions"):
        split_by_patient(IDS, fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="patients cannot fill"):
        split_by_patient(["a", "b"])
    check_disjoint({"a": ["x"], "b": ["y"]})


def test_by_patient_every_split_gets_a_patient_when_few():
    s = split_by_patient(["a", "b", "c"], seed=0)
    assert sorted(len(v) for v in s.values()) == [1, 1, 1]
    s = split_by_patient([str(i) for i in range(4)], fractions=(0.875, 0.125, 0.0), seed=0)
    assert [len(s[k]) for k in ("train", "val", "test")] == [3, 1, 0]
