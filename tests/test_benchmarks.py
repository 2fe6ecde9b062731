"""The benchmark scripts run and print the JSON line they promise (speed is not tested)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pcrl_lib.io import read_json
from pcrl_lib.methods.registry import METHODS

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _run(script, *args):
    out = subprocess.run(
        [sys.executable, str(BENCH / script), *args], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("dim", "preset", "dtype"),
    [("3", "paper", "bf16"), ("3", "official", "fp32"), ("2", "official", "bf16")],
)
def test_pretrain_step_prints_its_figures(dim, preset, dtype):
    args = [
        "--dim",
        dim,
        "--batch",
        "2",
        "--dtype",
        dtype,
        "--preset",
        preset,
        "--steps",
        "1",
        "--warmup",
        "0",
        "--locals",
        "2",
    ]
    if dim == "3":
        args += ["--width", "0.125"]
    rec = _run("pretrain_step.py", *args)
    assert {"median_s", "peak_rss_mb", "dim", "batch", "dtype", "preset"} <= set(rec)
    assert rec["dim"] == int(dim) and rec["batch"] == 2 and rec["dtype"] == dtype
    assert rec["median_s"] > 0 and rec["peak_rss_mb"] > 0


def test_views_throughput_prints_samples_per_second():
    rec = _run("views_throughput.py", "--samples", "2", "--shape", "160", "160", "120")
    assert rec["samples_per_s"] > 0
    assert rec["sample"]["locals"] == [6, 1, 16, 16, 16]


def test_method_steps_prints_every_3d_method():
    out = subprocess.run(
        [
            sys.executable,
            str(BENCH / "method_steps.py"),
            "--profile",
            "smoke",
            "--dim",
            "3",
            "--steps",
            "1",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = [json.loads(line) for line in out.stdout.strip().splitlines()]
    assert [r["method"] for r in rows] == list(METHODS)  # every 3D-capable method, in order
    assert all(r["median_s"] > 0 and r["dim"] == 3 for r in rows)


def test_cpu_layout_times_both_layouts_of_every_case():
    out = subprocess.run(
        [sys.executable, str(BENCH / "cpu_layout.py"), "--profile", "smoke", "--dims", "3",
         "--steps", "1", "--segmentation", "--max-batch", "2"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    rows = [json.loads(line) for line in out.stdout.strip().splitlines()]
    assert [r["case"] for r in rows] == [
        "pre-training PCRLv2", "pre-training MG", "pre-training SimSiam", "fine-tuning luna",
        "fine-tuning brats", "fine-tuning lits",
    ]  # fmt: skip
    for r in rows:
        assert r["contiguous_s"] > 0 and r["channels_last_s"] > 0 and r["dim"] == 3
        assert r["batch"] == 2 and r["profile"] == "smoke"
        assert r["ratio"] == pytest.approx(r["contiguous_s"] / r["channels_last_s"], abs=0.01)


def test_linear_probe_prints_one_line_per_method_and_ratio(tmp_path):
    rec = _run(
        "linear_probe.py",
        "--profile",
        "smoke",
        "--table",
        "table4",
        "--methods",
        "TS",
        "--ratios",
        "1.0",
        "--data-root",
        str(tmp_path),
    )
    assert rec["method"] == "random init" and rec["ratio"] == 1.0 and rec["table"] == "table4"
    assert rec["labelled"] > 0 and 0 <= rec["auroc"] <= 100


@pytest.mark.slow
def test_pretrain_vs_scratch_prints_each_pretraining_run_and_the_gap(tmp_path):
    common = ["--profile", "smoke", "--seeds", "0", "--finetune-steps", "1"]
    common += ["--data-root", str(tmp_path / "data")]
    out = subprocess.run(
        [sys.executable, str(BENCH / "pretrain_vs_scratch.py"), *common, "--table", "table8"]
        + ["--pretrain-seeds", "0", "1", "--out", str(tmp_path / "ct")],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = [json.loads(line) for line in out.stdout.strip().splitlines()]
    pretraining = [x for x in lines if "pretrain_seed" in x]
    assert [x["pretrain_seed"] for x in pretraining] == [0, 1]
    assert all(x["encoder_drift"]["first"] > 0 for x in pretraining)  # the runs moved the stem
    summary = lines[-1]
    assert (summary["table"], summary["task"], summary["ratio"]) == ("table8", "lits", 0.1)
    assert {"TS", "PCRLv2/p0", "PCRLv2/p1"} <= set(summary)
    p0, ts = summary["PCRLv2/p0"], summary["TS"]
    assert p0["spread"] == 0.0 and ts["std"] == 0.0  # one fine-tuning seed: no spread
    assert p0["gap"] == pytest.approx(p0["mean"] - ts["mean"], abs=0.02)
    assert p0["beats_ts"] == (p0["gap"] > 0)


def test_pretrain_vs_scratch_refuses_a_supervised_reference_for_ct(tmp_path):
    out = subprocess.run(
        [sys.executable, str(BENCH / "pretrain_vs_scratch.py"), "--table", "table7"]
        + ["--supervised-reference", "--data-root", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "needs an X-ray source; table7's is luna" in out.stderr


def test_finetune_lr_choice_is_the_best_mean_rank_of_validation_scores():
    sys.path.insert(0, str(BENCH))
    import pandas as pd
    from select_finetune_lr import choose

    rows = pd.DataFrame(
        [
            # task a prefers 1e-3 (ranks 1e-3: 1, 3e-3: 2, 1e-2: 3)
            ("a", 1e-3, 70.0), ("a", 3e-3, 65.0), ("a", 1e-2, 60.0),
            # task b prefers 1e-2 (ranks 1e-2: 1, 3e-3: 2, 1e-3: 3); draws averaged first
            ("b", 1e-3, 10.0), ("b", 1e-3, 20.0), ("b", 3e-3, 30.0), ("b", 1e-2, 50.0),
        ],
        columns=["task", "lr", "best_val"],
    )  # fmt: skip
    # mean ranks: 1e-3 2.0, 3e-3 2.0, 1e-2 2.0 -> ties; add a third task that breaks them
    rows = pd.concat(
        [
            rows,
            pd.DataFrame(
                [("c", 1e-3, 1.0), ("c", 3e-3, 3.0), ("c", 1e-2, 2.0)], columns=rows.columns
            ),
        ]
    )
    assert choose(rows) == 3e-3  # mean ranks 1e-3 2.33, 3e-3 1.67, 1e-2 2.0


def _run_env(script, env_dirs, *args):
    import os

    env = {
        **os.environ,
        "PCRL_DATA_ROOT": str(env_dirs / "data"),
        "PCRL_RESULTS": str(env_dirs / "results"),
    }
    out = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return [json.loads(x) for x in out.stdout.strip().splitlines() if x.startswith("{")]


@pytest.mark.slow
def test_select_pretrain_optimizer_scores_every_candidate_and_chooses(tmp_path):
    lines = _run_env(
        "select_pretrain_optimizer.py",
        tmp_path,
        "--profile",
        "smoke",
        "--steps",
        "2",
        "--dims",
        "3",
    )
    rows, choice = lines[:-1], lines[-1]
    assert [(r["optimizer"], r["lr"]) for r in rows] == [
        ("sgd", 0.01),
        ("adamw", 1e-3),
        ("adamw", 3e-4),
    ]
    assert all({"final_loss", "drift_last", "machine"} <= set(r) for r in rows)
    assert choice["dims"] == 3 and choice["choice"] in ("sgd", "adamw")


@pytest.mark.slow
def test_pretrain_budget_writes_its_tables_once_the_plan_is_complete(tmp_path):
    import pandas as pd

    records = tmp_path / "records"
    part = ("--profile", "smoke", "--records", str(records), "--zoo", str(tmp_path / "zoo"))
    (line,) = _run_env(
        "pretrain_budget.py", tmp_path, *part, "--sources", "luna", "--methods", "MG"
    )
    assert line["tables"] == "not rewritten" and "nih_PCRLv2_p0_s000002" in line["missing_records"]
    assert "luna_MG_p0_s000002" not in line["missing_records"]
    written = read_json(records / "luna_MG_p0_s000002.json.gz")["finetune"]
    assert written["checkpoint"] == "luna_MG_p0/step_000002.pt"  # no folder of this machine
    assert written["data"] == "smoke/synthetic-luna/candidates"
    assert sorted(p.name for p in (tmp_path / "zoo").iterdir()) == [
        "luna_MG_p0.pt",
        "manifest.json",
    ]
    # the rest of the plan; the finished run is not run again
    (line,) = _run_env("pretrain_budget.py", tmp_path, *part, "--workers", "2")
    rows = pd.read_csv(line["written"][0])
    assert set(rows["method"]) == {"PCRLv2", "MG", "SimSiam"} and sorted(set(rows["steps"])) == [
        0,
        2,
    ]
    log = tmp_path / "results" / "smoke" / "budget" / "pretrain" / "luna_MG_p0" / "log.jsonl"
    assert sum('"kind": "epoch"' in x for x in log.read_text().splitlines()) == 1  # one stage
    bad = subprocess.run(
        [sys.executable, str(BENCH / "pretrain_budget.py"), "--profile", "smoke", "--sources", "brats"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert bad.returncode == 2 and "not in the plan" in bad.stderr


def test_pretrain_budget_never_extends_the_committed_records_at_another_precision():
    fp32 = subprocess.run(
        [sys.executable, str(BENCH / "pretrain_budget.py"), "--profile", "demo", "--sources", "nih"],
        capture_output=True, text=True, env={**os.environ, "PCRL_CPU_AUTOCAST": "off", "PCRL_DEVICE": "cpu"},
    )  # fmt: skip
    assert fp32.returncode == 2, fp32.stderr
    assert "nih probe and fine-tuning (nih): bf16 -> fp32" in fp32.stderr
    assert "Traceback" not in fp32.stderr


def _side_by_side():
    import importlib.util

    spec = importlib.util.spec_from_file_location("side_by_side", BENCH / "side_by_side.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_side_by_side_ratios_are_medians_over_rounds():
    s = _side_by_side()
    ours = [{"median_s": 4.0, "peak_rss_mb": 2000.0}, {"median_s": 6.0, "peak_rss_mb": 2200.0}]
    released = [
        {"median_s": 16.0, "peak_rss_mb": 5000.0},
        {"median_s": 18.0, "peak_rss_mb": 5000.0},
    ]
    out = s.summarize(ours, released)
    assert (out["ours_s"], out["released_s"], out["speedup"]) == (5.0, 17.0, 3.4)
    assert (out["ours_peak_mb"], out["memory_ratio"]) == (2100.0, 0.42)
    assert s.last_json('noise\n{"a": 1}\nnot json\n', "x") == {"a": 1}
    with pytest.raises(ValueError, match="^prog printed no JSON line$"):
        s.last_json("step 1: 2.0 s\n", "prog")


def test_side_by_side_runs_both_sides_and_refuses_a_missing_folder(tmp_path, capsys):
    fake = tmp_path / "released"
    fake.mkdir()
    (fake / "time_official.py").write_text(
        'import json; print("step 0: 1 s"); print(json.dumps({"median_s": 2.0, "peak_rss_mb": 900.0}))\n'
    )
    tiny = "--dim 3 --batch 2 --width 0.125 --locals 1 --warmup 0 --dtype fp32"
    s = _side_by_side()
    code = s.main(["--official", str(fake), "--rounds", "1", "--steps", "1", "--ours-args", tiny])
    assert code == 0
    rec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rec["released_s"] == 2.0 and rec["speedup"] == round(2.0 / rec["ours_s"], 2)
    assert rec["rounds"] == 1 and rec["ours_peak_mb"] > 0
    assert s.main(["--official", str(tmp_path / "none")]) == 2
    assert "no released timing script" in capsys.readouterr().err


def test_bootstrap_auroc_compares_with_another_version_and_refuses_an_unknown_one(tmp_path):
    today = Path(__file__).resolve().parents[1] / "pcrl_lib" / "metrics.py"
    (tmp_path / "metrics.py").write_text(today.read_text())  # a copy: the same arrays
    rec = _run("bootstrap_auroc.py", "--cases", "50", "--classes", "3", "--resamples", "20",
               "--rounds", "1", "--against", str(tmp_path / "metrics.py"))  # fmt: skip
    assert (rec["cases"], rec["classes"], rec["resamples"]) == (50, 3, 20)
    assert rec["identical"] is True
    assert rec["ratio"] == pytest.approx(rec["against_median_s"] / rec["median_s"])
    bad = subprocess.run(
        [sys.executable, str(BENCH / "bootstrap_auroc.py"), "--against", "no-such-revision"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and not bad.stdout
    assert "cannot read pcrl_lib/metrics.py at 'no-such-revision'" in bad.stderr


def test_peak_flops_are_known_for_the_listed_gpus_only():
    sys.path.insert(0, str(BENCH))
    from gpu_check import peak_flops

    assert peak_flops("NVIDIA H200") == {"bf16": 989e12, "fp32": 494e12}
    assert peak_flops("NVIDIA A100-SXM4-80GB")["bf16"] == 312e12
    assert peak_flops("AMD EPYC, 2 threads, torch 2.14.1") is None


def test_gpu_check_skips_the_sections_past_its_budget_and_says_so():
    sys.path.insert(0, str(BENCH))
    from gpu_check import run

    result = run(True, 0.0, only=["device", "data"])  # the device section spends the budget
    assert result["data"] == {"skipped": "time budget of 0 s spent"}
    assert set(result["section_s"]) == {"device"}
    assert "cpus" in result["device"]
    unlimited = run(True, None, only=["device", "data"])  # the dry run's default: no budget
    assert set(unlimited["section_s"]) == {"device", "data"} and "skipped" not in unlimited["data"]


@pytest.mark.slow
def test_gpu_check_dry_run_runs_every_section_on_the_cpu(tmp_path):
    """``benchmarks/gpu_check.sh --dry-run``: every section at tiny shapes, none failing."""
    out = tmp_path / "gpu_check.json"
    done = subprocess.run(
        ["bash", str(BENCH / "gpu_check.sh"), "--dry-run", "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert json.loads(done.stdout.strip().splitlines()[-1])["written"] == str(out)
    sections = ("device", "paper_check", "steps", "data", "pretrain_resume", "ddp")
    assert set(result["section_s"]) == set(sections)
    for name in sections:
        assert "error" not in result[name] and "skipped" not in result[name], result[name]
    steps = result["steps"]
    assert [(s["dims"], s["dtype"], s["compile"]) for s in steps] == [
        (3, "fp32", False), (3, "bf16", False), (3, "bf16", True),
        (2, "fp32", False), (2, "bf16", False), (2, "bf16", True),
    ]  # fmt: skip
    for s in steps:
        assert "error" not in s, s
        assert s["samples_per_s"] > 0 and s["flops_per_step"] > 0
    # the FLOPs of a step do not depend on precision or compilation
    assert len({s["flops_per_step"] for s in steps if s["dims"] == 3}) == 1
    assert [r["name"] for r in result["paper_check"]["rows"]] == ["nih_MG", "finetune_luna"]
    assert [r["workers"] for r in result["data"]["loaders"]] == [0, 2]
    resume = result["pretrain_resume"]
    assert (resume["steps"], resume["resumed_at"], resume["finite"]) == (4, 2, True)
    assert result["ddp"]["processes"] == 2 and result["ddp"]["ranks_identical"] is True


def test_released_2d_step_rebuilds_the_released_network_and_times_it():
    sys.path.insert(0, str(BENCH))
    import torch
    from released_2d_step import Released2D

    model = Released2D().train()
    outs, mask, middle = model(torch.rand(2, 3, 64, 64))
    # five decoder scales of 256 .. 16 channels, a 3-channel mask at full size, middle masks
    # up-sampled to full size
    assert [o[0].shape[1] for o in outs] == [256, 128, 64, 32, 16]
    assert mask.shape == (2, 3, 64, 64) and all(m.shape == (2, 3, 64, 64) for m in middle)
    encoder = sum(
        p.numel() for n, p in model.named_parameters() if n.startswith(("stem", "layers"))
    )
    assert encoder == 11_176_512  # torchvision's ResNet-18 without its classifier
    rec = _run("released_2d_step.py", "--batch", "2", "--steps", "1", "--threads", "1")
    assert rec["batch"] == 2 and rec["median_s"] > 0 and rec["peak_rss_mb"] > 0


def test_side_by_side_in_2d_needs_no_released_folder(capsys):
    s = _side_by_side()
    tiny = "--dim 2 --batch 2 --locals 1 --warmup 0 --dtype fp32"
    code = s.main(
        ["--dim", "2", "--batch", "2", "--rounds", "1", "--steps", "1", "--ours-args", tiny]
    )
    assert code == 0
    rec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rec["benchmark"] == "side_by_side_2d_step" and rec["released_s"] > 0


def _step_bound():
    import importlib.util

    spec = importlib.util.spec_from_file_location("step_bound", BENCH / "step_bound.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_step_bound_counts_the_largest_convolution_by_hand(tmp_path, capsys):
    b = _step_bound()
    assert b.conv_macs((1, 2, 3, 4, 5)) == 1 * 3 * 4 * 5 * 2 * 2 * 27
    assert b.conv_macs() == 4 * 64 * 64 * 32 * 64 * 64 * 27  # 58.0 G multiply-adds
    assert b.floor_seconds(6e9, 1.5e9) == 2.0  # 3 G multiply-adds at 1.5 G/s
    assert b.conv_rate("fp32", (1, 2, 4, 4, 4), repeats=1) > 0
    assert b.main(["--official", str(tmp_path)]) == 2
    assert "no train_3d.py" in capsys.readouterr().err
