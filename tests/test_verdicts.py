import numpy as np
import pytest

from pcrl_lib.grid import MAIN_TABLES
from pcrl_lib.verdicts import (
    COLUMNS,
    GAIN,
    LOSS,
    NONE,
    NOT_RUN,
    Arm,
    Check,
    paired_difference,
    report_checks,
    small_sample_factor,
    verdict,
    verdict_table,
)
from pcrl_lib.verdicts import ArmRun as Run


def _dice_runs(per_case: np.ndarray, seeds=(None,), draws=range(5), shift_by=None):
    """One run per (seed, draw); Dice per case = ``per_case`` + ``shift_by(seed, draw)``."""
    return [
        Run(s, d, {"dice": (per_case + (shift_by(s, d) if shift_by else 0))[:, None].tolist()})
        for s in seeds
        for d in draws
    ]


def test_verdict_reads_the_interval():
    assert verdict(0.1, 3.0) == GAIN
    assert verdict(-3.0, -0.1) == LOSS
    assert verdict(-0.1, 3.0) == NONE


def test_a_constant_shift_is_estimated_exactly_with_a_zero_width_interval():
    base = np.random.default_rng(0).uniform(0.3, 0.9, 40)
    a = _dice_runs(base + 0.1, seeds=(0, 1, 2))
    b = _dice_runs(base)
    res = paired_difference(a, b, n_boot=200)
    # pairing by test case and by draw removes every source of variation
    assert res["estimate"] == pytest.approx(10.0)
    assert res["ci_low"] == pytest.approx(10.0) and res["ci_high"] == pytest.approx(10.0)
    assert (res["pretrain_seeds"], res["label_draws"], res["test_cases"]) == (3, 5, 40)


def test_estimate_is_the_difference_of_arm_means_and_seeds_widen_the_interval():
    base = np.full(30, 0.5)
    # pre-training seed s adds 0.02 * s; draw d adds 0.01 * d on both arms
    a = _dice_runs(base, seeds=(0, 1, 2), shift_by=lambda s, d: 0.02 * s + 0.01 * d)
    b = _dice_runs(base, shift_by=lambda s, d: 0.01 * d)
    res = paired_difference(a, b, n_boot=500)
    assert res["estimate"] == pytest.approx(2.0)  # mean of 0, 2, 4 points
    # draws cancel (paired) and test cases are constant: only the seeds spread it; the
    # percentile interval lies in [0, 4], widened by the small-sample factor of 5 draws
    k = small_sample_factor(5)
    assert 2.0 - 2.0 * k - 1e-9 <= res["ci_low"] < 2.0 < res["ci_high"] <= 2.0 + 2.0 * k + 1e-9
    assert res["mde"] == pytest.approx((1.959964 + 0.841621) * k * res["se"])


def test_small_sample_factor_is_the_t_over_z_expansion():
    # t_{0.975, 4} = 2.7764, sqrt(5/4) = 1.1180, z = 1.9600
    assert small_sample_factor(5) == pytest.approx(2.7764 * 1.1180 / 1.9600, rel=1e-3)
    assert small_sample_factor(1) == 1.0
    assert 1.0 < small_sample_factor(200) < 1.01


def test_identical_auroc_runs_give_no_detectable_gain():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, (200, 3))
    score = rng.random((200, 3)) + 0.3 * y
    runs = [Run(None, d, {"y_true": y.tolist(), "y_score": score.tolist()}) for d in range(3)]
    res = paired_difference(runs, runs, n_boot=100)
    assert res["estimate"] == 0.0 and res["ci_low"] == 0.0 and res["ci_high"] == 0.0
    assert verdict(res["ci_low"], res["ci_high"]) == NONE


def test_auroc_gain_is_detected_when_one_arm_ranks_better():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 400)
    good = y + rng.normal(0, 0.5, 400)
    bad = y + rng.normal(0, 2.0, 400)
    a = [Run(0, d, {"y_true": y.tolist(), "y_score": good.tolist()}) for d in range(5)]
    b = [Run(None, d, {"y_true": y.tolist(), "y_score": bad.tolist()}) for d in range(5)]
    res = paired_difference(a, b, n_boot=300)
    assert res["ci_low"] > 0 and verdict(res["ci_low"], res["ci_high"]) == GAIN


def test_arms_without_a_shared_draw_or_on_different_splits_are_refused():
    a = _dice_runs(np.full(10, 0.5), draws=[0])
    with pytest.raises(ValueError, match="share no label draw"):
        paired_difference(a, _dice_runs(np.full(10, 0.5), draws=[1]))
    with pytest.raises(ValueError, match="different splits"):
        paired_difference(a, _dice_runs(np.full(12, 0.5), draws=[0]))
    other = [Run(None, 0, a[0].per_case, "0123abcd")]
    with pytest.raises(ValueError, match="different splits"):
        paired_difference([Run(0, 0, a[0].per_case, "ffff0000")], other)


def test_report_checks_cover_every_table_and_ablation():
    checks = report_checks()
    assert {c.table for c in checks} == {"table1", "table2", "table3", *MAIN_TABLES}
    ts = [c for c in checks if c.b == Arm("TS")]
    assert len(ts) == 5 and all(c.label_ratio == MAIN_TABLES[c.table].ratios[0] for c in ts)
    assert sum(c.table == "table1" for c in checks) == 3
    assert sum(c.table == "table3" for c in checks) == 12


def _record(method, draw, dice, variant="", pretrain_seed=None):
    return {
        "task": "lits",
        "protocol": "transfer",
        "label_ratio": 0.1,
        "method": method,
        "variant": variant,
        "draw": draw,
        "pretrain_seed": pretrain_seed,
        "metrics": {"mean": float(np.mean(dice))},
        "per_case": {"dice": [[v] for v in dice]},
    }


def test_verdict_table_from_records_and_not_run_without_an_arm():
    dice = np.linspace(0.4, 0.8, 20)
    records = [_record("TS", d, dice) for d in range(5)] + [
        _record("PCRLv2", d, dice - 0.05, pretrain_seed=s) for s in range(3) for d in range(5)
    ]
    check = Check(
        "table8", "lits 10%", "PCRLv2 - TS", "lits", "transfer", 0.1, Arm("PCRLv2"), Arm("TS")
    )
    missing = Check(
        "table1", "lits", "skip", "lits", "transfer", 0.1, Arm("PCRLv2"), Arm("PCRLv2", "skip")
    )
    table = verdict_table(records, [check, missing], n_boot=100)
    assert tuple(table.columns) == COLUMNS
    row = table.iloc[0]
    assert row["verdict"] == LOSS and row["estimate"] == pytest.approx(-5.0)
    assert (row["pretrain_seeds"], row["label_draws"], row["test_cases"]) == (3, 5, 20)
    assert table.iloc[1]["verdict"] == NOT_RUN


def test_verdict_counts_are_written_as_integers(tmp_path):
    dice = np.linspace(0.4, 0.8, 10)
    records = [_record("TS", d, dice) for d in range(2)]
    records += [_record("PCRLv2", d, dice, pretrain_seed=d) for d in range(2)]
    check = Check("table8", "s", "c", "lits", "transfer", 0.1, Arm("PCRLv2"), Arm("TS"))
    missing = Check("table1", "s", "c", "lits", "transfer", 0.1, Arm("X"), Arm("TS"))
    path = tmp_path / "v.csv"
    verdict_table(records, [check, missing], n_boot=50).to_csv(path, index=False)
    lines = path.read_text().splitlines()
    assert lines[1].endswith(",2,2,10,0.0") and ",not run,,,," in lines[2]


def test_paired_units_are_resampled_once_giving_the_standard_error_of_their_mean():
    """Pre-training run d paired with draw d: each unit's difference is delta_d (constant
    over test cases), so the bootstrap SE is that of a mean of 5 values: sd(delta) / sqrt(5)
    (population sd, the bootstrap's), not inflated by resampling the seeds a second time."""
    delta = np.array([0.00, 0.02, 0.04, 0.06, 0.08])
    base = np.full(30, 0.5)
    a = [Run(d, d, {"dice": (base + delta[d])[:, None].tolist()}) for d in range(5)]
    b = [Run(None, d, {"dice": base[:, None].tolist()}) for d in range(5)]
    res = paired_difference(a, b, n_boot=4000)
    assert res["estimate"] == pytest.approx(4.0)
    assert res["se"] == pytest.approx(100 * delta.std() / np.sqrt(5), rel=0.08)


def test_arm_interval_is_the_mean_with_an_interval_from_draws_and_cases():
    from pcrl_lib.verdicts import arm_interval

    base = np.full(20, 0.5)
    flat = arm_interval(_dice_runs(base, draws=range(4)), n_boot=200)
    # nothing varies: the interval collapses onto the mean
    assert flat == pytest.approx({"estimate": 50.0, "ci_low": 50.0, "ci_high": 50.0})
    spread = arm_interval(_dice_runs(base, draws=range(4), shift_by=lambda s, d: 0.02 * d))
    assert spread["estimate"] == pytest.approx(53.0)  # draws add 0, 2, 4, 6 points
    assert spread["ci_low"] < 53.0 < spread["ci_high"]
    with pytest.raises(ValueError, match="no runs"):
        arm_interval([])


def test_paired_seeds_cancel_what_a_seed_adds_to_both_arms():
    base = np.full(20, 0.5)
    # seed s adds 0.05 * s to both arms (one pre-training run measured twice); the gain is 3
    a = _dice_runs(base, seeds=(0, 1, 2), draws=range(4), shift_by=lambda s, d: 0.05 * s + 0.03)
    b = _dice_runs(base, seeds=(0, 1, 2), draws=range(4), shift_by=lambda s, d: 0.05 * s)
    paired = paired_difference(a, b, n_boot=300, paired_seeds=True)
    assert paired["estimate"] == pytest.approx(3.0)
    assert paired["ci_low"] == pytest.approx(3.0) and paired["ci_high"] == pytest.approx(3.0)
    unpaired = paired_difference(a, b, n_boot=300)  # seeds resampled apart: wider
    assert unpaired["ci_high"] - unpaired["ci_low"] > 1.0
    with pytest.raises(ValueError, match="paired_seeds"):
        paired_difference(a, a[:4], paired_seeds=True)  # seed 0 only on one side
