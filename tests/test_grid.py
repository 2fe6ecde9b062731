"""The reproduction grid: every cell of every published table has its runs; runs are shared,
resumed and their failures recorded, never lost."""

import json
import math
from dataclasses import replace

import pandas as pd
import pytest

from pcrl_lib.grid import (
    MAIN_TABLES,
    SEEDS,
    VARIANTS,
    FinetuneRun,
    PretrainRun,
    SeedPlan,
    fig6_pretrain_runs,
    figure_runs,
    finetune_runs,
    pretrain_runs,
    record_file,
    run_finetuning,
)
from pcrl_lib.methods.pcrlv2 import pcrlv2_config
from pcrl_lib.paths import PUBLISHED_DIR
from pcrl_lib.tables import cell_query, load_records, regenerate


def _key(task, protocol, ratio, method, variant):
    return (task, protocol, round(ratio, 4), method, variant)


def _cells_without_a_run(profile):
    runs = {
        _key(r.task, r.protocol, r.label_ratio, r.method, r.variant) for r in finetune_runs(profile)
    }
    cells, missing = 0, []
    for csv in sorted(PUBLISHED_DIR.glob("table*.csv")):
        table = pd.read_csv(csv, dtype=str, keep_default_na=False)
        for _, row in table.iterrows():
            for col in table.columns:
                q = cell_query(csv.stem, row, col)
                if q is not None:
                    cells += 1
                    if _key(q.task, q.protocol, q.label_ratio, q.method, q.variant) not in runs:
                        missing.append((csv.stem, q))
    return cells, missing


def test_every_published_cell_has_a_run_at_paper():
    cells, missing = _cells_without_a_run("paper")
    assert cells > 600 and not missing


def test_the_demo_runs_every_cell_but_its_stated_cuts():
    """The demo's cuts (SeedPlan): the ablation Tables I-III and the ratios above the lowest;
    everything else has its runs."""
    plan = SEEDS["demo"]
    _, missing = _cells_without_a_run("demo")
    assert missing
    for table, q in missing:
        lowest = {spec.task + spec.protocol: spec.ratios[0] for spec in MAIN_TABLES.values()}
        cut_table = table.startswith(plan.skip_tables)
        cut_cell = (table.split("_")[0], q.task) in plan.skip_ablations
        cut_ratio = (
            q.method not in plan.higher_ratio_methods
            and q.label_ratio != lowest[q.task + q.protocol]
        )
        assert cut_table or cut_cell or cut_ratio, (table, q)
    assert {t.split("_")[0] for t, _ in missing} >= {"table1", "table2", "table3"}
    # no ablation variant is fine-tuned, but Fig. 6's LUNA pair is pre-trained
    assert not [r for r in finetune_runs("demo") if r.variant]
    assert fig6_pretrain_runs("demo") == [
        PretrainRun("luna", "PCRLv2"),
        PretrainRun("luna", "PCRLv2", "skip"),
    ]
    assert set(fig6_pretrain_runs("demo")) <= set(pretrain_runs("demo"))


def test_runs_are_unique_and_shared_runs_name_all_their_tables():
    runs = finetune_runs("demo")
    assert len(runs) == len(set(runs))
    shared = next(
        r
        for r in runs
        if (r.task, r.protocol, r.label_ratio, r.method, r.variant, r.seed)
        == ("lits", "transfer", 0.1, "PCRLv2", "", 0)
    )
    assert shared.tables == ("beyond", "table8")  # Table I is not run at demo
    paper = next(
        r
        for r in finetune_runs("paper")
        if (r.task, r.protocol, r.label_ratio, r.method, r.variant, r.seed, r.draw)
        == ("brats", "transfer", 0.1, "PCRLv2", "", 0, 0)
        and r.pretrain_seed == 0
    )
    assert paper.tables == ("beyond", "table1", "table3", "table7")  # and beyond the paper


def test_seed_plan_units_crossed_and_paired():
    crossed = SeedPlan(1, 3, 5)
    assert crossed.units(True) == [(p, d) for p in range(3) for d in range(5)]
    assert crossed.units(False) == [(0, d) for d in range(5)]
    paired = SeedPlan(1, 5, 5, paired_draws=True)
    assert paired.units(True) == [(d, d) for d in range(5)]
    with pytest.raises(ValueError, match="pretrain_seeds == label_draws"):
        SeedPlan(1, 3, 5, paired_draws=True)


def _lowest_cell(runs, spec, method, variant=""):
    return [
        r
        for r in runs
        if r.task == spec.task
        and r.protocol == spec.protocol
        and r.label_ratio == spec.ratios[0]
        and r.method == method
        and r.variant == variant
    ]


@pytest.mark.parametrize("profile", ["demo", "paper"])
def test_lowest_ratio_pcrlv2_and_ts_run_every_pretraining_seed_and_label_draw(profile):
    plan = SEEDS[profile]
    runs = finetune_runs(profile)
    assert plan.pretrain_seeds >= 3 and plan.label_draws >= 5
    for spec in MAIN_TABLES.values():
        pcrl, ts = _lowest_cell(runs, spec, "PCRLv2"), _lowest_cell(runs, spec, "TS")
        assert sorted((r.pretrain_seed, r.draw) for r in pcrl) == plan.units(True), spec.name
        # TS on the same draws, fine-tuning seed = draw on both sides (paired)
        assert sorted((r.draw, r.seed) for r in ts) == [(d, d) for d in range(plan.label_draws)]
        assert all(r.seed == r.draw for r in pcrl)
        assert len({r.pretrain.name for r in pcrl}) == plan.pretrain_seeds
        # MG's own runs (the table beyond the paper adds paired units to Tables V, VII, VIII)
        mg = [r for r in _lowest_cell(runs, spec, "MG") if spec.name in r.tables]
        assert len(mg) == plan.seeds_all and all(r.draw == 0 for r in mg)


def test_compared_ablation_variants_get_the_design_and_names_are_distinct(monkeypatch):
    # the demo's plan with Table I run (the design of a compared variant, 5 paired units)
    monkeypatch.setitem(SEEDS, "demo", replace(SEEDS["demo"], skip_tables=("table2", "table3")))
    runs = finetune_runs("demo")
    skip = [r for r in runs if r.variant == "skip" and r.task == "lits"]
    assert sorted((r.pretrain_seed, r.draw) for r in skip) == SEEDS["demo"].units(True)
    assert not [r for r in runs if r.variant.startswith("row")]  # Table III: not at demo
    assert len({r.name for r in runs}) == len(runs)
    one = next(r for r in skip if r.draw == 3)
    assert one.name == "lits_transfer_r0.1_PCRLv2-skip_p3_d3_s3"
    assert one.pretrain.name == "luna_PCRLv2-skip_p3"
    row0 = [r for r in finetune_runs("paper") if r.variant == "row0"]
    assert sorted({(r.pretrain_seed, r.draw) for r in row0}) == SEEDS["paper"].units(True)


def test_smoke_runs_only_the_lowest_ratio():
    for r in finetune_runs("smoke", tuple(MAIN_TABLES)):
        assert r.label_ratio == MAIN_TABLES[r.tables[0]].ratios[0]


def test_pretraining_runs_cover_the_finetuning_runs_3d_first():
    pre = pretrain_runs("demo")
    assert len(pre) == len(set(pre))
    needed = {r.pretrain for r in finetune_runs("demo")} - {None}
    assert needed | set(fig6_pretrain_runs("demo")) == set(pre)
    assert PretrainRun("luna", "PCRLv2", "skip") not in needed  # Fig. 6's alone
    dims = [p.spatial_dims for p in pre]
    assert dims == sorted(dims, reverse=True)
    assert PretrainRun("luna", "Cube++") in pre and PretrainRun("nih", "Cube++") not in pre
    assert all(r.pretrain is None for r in finetune_runs("demo") if r.method in ("TS", "IN"))


@pytest.mark.parametrize("dims", [2, 3])
def test_every_variant_is_a_valid_distinct_pcrlv2_config(dims):
    configs = {v: pcrlv2_config("paper", dims, **o) for v, o in VARIANTS.items()}
    assert len({str(c) for c in configs.values()}) == len(VARIANTS)
    assert not configs["row0"].comparison and configs["row0"].restoration
    assert not configs["row1"].restoration and configs["row1"].comparison
    assert configs["row5"].crops == "multi" and configs[""].crops == "sub"
    assert configs["skip"].skip and configs["crossed"].comparison_mode == "crossed"


def test_figure_runs_are_grid_runs():
    runs = set(finetune_runs("demo"))
    figs = figure_runs("demo")
    assert {r.method for r in figs["fig8a"]} == {"TransVW", "PCRLv1", "PCRLv2"}
    assert {r.label_ratio for r in figs["fig8c"]} == {0.1}  # the demo runs the lowest ratio
    paper = figure_runs("paper")
    assert {r.label_ratio for r in paper["fig8c"]} == {0.1, 0.2, 0.3}
    assert all(r in runs for group in figs.values() for r in group)


def test_diverged_pretraining_gives_fail_cells_and_missing_imagenet_is_not_run(
    tmp_path, monkeypatch
):
    monkeypatch.delenv("PCRL_IMAGENET_WEIGHTS", raising=False)
    monkeypatch.setattr("torch.hub.get_dir", lambda: str(tmp_path / "hub"))
    pre = PretrainRun("luna", "PCRLv2", "row5")
    failed = tmp_path / "smoke" / "pretrain" / pre.name / "failed.json"
    failed.parent.mkdir(parents=True)
    failed.write_text(json.dumps({"error": "loss is nan"}))
    run = FinetuneRun("brats", "transfer", 0.1, "PCRLv2", "row5", 0, pre, ("table3",))
    imagenet = FinetuneRun("nih", "transfer", 0.1, "IN", "", 0, None, ("table6",))
    rows = run_finetuning("smoke", [run, imagenet], {}, results=tmp_path)
    assert rows[0]["status"].startswith("fail")
    assert rows[1]["status"].startswith("not run") and "ImageNet" in rows[1]["status"]
    rec = json.loads(record_file("smoke", run, tmp_path).read_text())
    assert math.isnan(rec["metrics"]["mean"]) and rec["variant"] == "row5"
    assert not record_file("smoke", imagenet, tmp_path).exists()
    values, _ = regenerate("table3_module_ablation", load_records(tmp_path / "smoke" / "runs"))
    assert values.loc[values["row"] == "5", "WT_BraTS_dice"].item() == "fail"
    # a second call finds the record and does nothing
    assert run_finetuning("smoke", [run], {}, results=tmp_path)[0]["status"] == "done before"
