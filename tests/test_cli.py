"""``python -m pcrl_lib pretrain | finetune | evaluate`` end to end at the smoke profile, and
the errors a newcomer meets."""

import json

import pytest

from pcrl_lib.cli import main
from pcrl_lib.grid import finetune_runs
from pcrl_lib.profiles import ensure_data


@pytest.fixture(scope="module")
def smoke_data(tmp_path_factory):
    return ensure_data("smoke", tmp_path_factory.mktemp("data"), roles=("luna", "brats"))


@pytest.mark.slow
def test_pretrain_finetune_evaluate(smoke_data, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PCRL_RESULTS", str(tmp_path / "results"))
    runs = tmp_path / "results" / "smoke" / "runs"
    luna = smoke_data["luna"]
    assert (
        main(
            [
                "pretrain",
                "--data",
                str(luna / "volumes"),
                "--out",
                str(tmp_path / "pt"),
                "--profile",
                "smoke",
                "--quiet",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["epochs_run"] == 1 and (tmp_path / "pt" / "last.pt").is_file()
    assert summary["encoder_init"] is None
    # a second pre-training that starts its encoder from the first one's
    again = ["pretrain", "--data", str(luna / "volumes"), "--out", str(tmp_path / "pt2")]
    init = str(tmp_path / "pt" / "last.pt")
    assert main([*again, "--profile", "smoke", "--quiet", "--encoder-init", init]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["encoder_init"] == init
    args = [
        "finetune",
        "luna",
        "--data",
        str(luna),
        "--out",
        str(tmp_path / "ft"),
        "--profile",
        "smoke",
    ]
    assert (
        main([*args, "--checkpoint", str(tmp_path / "pt" / "last.pt"), "--label-ratio", "0.5"]) == 0
    )
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    record = json.loads((runs / "luna_semi_r0.5_PCRLv2_s0.json").read_text())
    assert out["record"] == str(runs / "luna_semi_r0.5_PCRLv2_s0.json")
    assert record["method"] == "PCRLv2" and record["label_ratio"] == 0.5
    assert set(out["metrics"]) >= {"mean", "mean_ci", "label", "label_ci"}
    # a 4-modality BraTS model from the 1-channel CT checkpoint (first kernel inflated)
    brats = [
        "finetune",
        "brats",
        "--data",
        str(smoke_data["brats"]),
        "--out",
        str(tmp_path / "ftb"),
        "--profile",
        "smoke",
    ]
    assert (
        main([*brats, "--checkpoint", str(tmp_path / "pt" / "last.pt"), "--protocol", "transfer"])
        == 0
    )
    assert "WT_ci" in json.loads((runs / "brats_transfer_r1_PCRLv2_s0.json").read_text())["metrics"]
    capsys.readouterr()
    ev = [
        "evaluate",
        "luna",
        "--data",
        str(luna),
        "--weights",
        str(tmp_path / "ft" / "best.pt"),
        "--profile",
        "smoke",
    ]
    assert main(ev) == 0
    assert json.loads(capsys.readouterr().out)["mean"] == pytest.approx(record["metrics"]["mean"])


def test_errors_say_what_to_fix(smoke_data, tmp_path, capsys):
    assert (
        main(
            [
                "finetune",
                "luna",
                "--data",
                str(tmp_path / "none"),
                "--out",
                str(tmp_path / "o"),
                "--profile",
                "smoke",
            ]
        )
        == 2
    )
    assert "not a prepared dataset" in capsys.readouterr().err
    ev = ["evaluate", "luna", "--data", str(smoke_data["luna"]), "--profile", "smoke"]
    assert main([*ev, "--weights", str(tmp_path / "missing.pt")]) == 2
    assert "missing.pt" in capsys.readouterr().err
    pre = ["pretrain", "--data", str(smoke_data["luna"] / "volumes"), "--out", str(tmp_path / "p")]
    assert main([*pre, "--profile", "smoke", "--encoder-init", str(tmp_path / "no_init.pt")]) == 2
    assert "no_init.pt" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["finetune", "lung", "--data", "x", "--out", "y"])
    assert "invalid choice: 'lung'" in capsys.readouterr().err


def test_grid_lists_runs_and_runs_one_pretraining_where_notebook_02_finds_it(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("PCRL_RESULTS", str(tmp_path))
    ensure_data("smoke", tmp_path / "data", roles=("nih",))
    assert main(["grid", "--profile", "smoke", "--list"]) == 0
    listing = capsys.readouterr().out
    assert "luna_PCRLv2-row5" in listing and "to run" in listing
    assert f"finetune  0 of {len(finetune_runs('smoke'))} runs have a record" in listing
    root = str(tmp_path / "data")
    assert (
        main(["grid", "--profile", "smoke", "--data-root", root, "--pretrain", "nih_SimSiam"]) == 0
    )
    summary = json.loads(
        (tmp_path / "smoke" / "pretrain" / "nih_SimSiam" / "summary.json").read_text()
    )
    # every pre-training run is probed on its source's task over the profile's label draws
    assert summary["probe"]["task"] == "nih" and len(summary["probe"]["auroc"]) == 2
    capsys.readouterr()
    main(["grid", "--profile", "smoke", "--list"])
    assert "nih_SimSiam                      done" in capsys.readouterr().out
    assert main(["grid", "--profile", "smoke", "--pretrain", "nih_Nope"]) == 2
    assert "see --list" in capsys.readouterr().err


def test_finetune_draw_must_be_a_non_negative_integer(capsys):
    for bad in ("-1", "two"):
        with pytest.raises(SystemExit) as exit_info:
            main(["finetune", "luna", "--data", "x", "--out", "y", "--draw", bad])
        assert exit_info.value.code == 2
        assert "--draw" in capsys.readouterr().err
