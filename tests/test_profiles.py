"""Profiles: the fine-tuning schedule of a step budget."""

import pytest

from pcrl_lib.profiles import FinetuneSettings, finetune_settings


def validated_epochs(epochs: int, eval_every: int) -> list[int]:
    """The epochs (1-based) after which finetune() validates: every k-th and the last."""
    return [e for e in range(1, epochs + 1) if e % eval_every == 0 or e == epochs]


@pytest.mark.parametrize(
    ("n_samples", "expected"),
    [
        (35, (40, 14)),  # one batch per epoch: 40 epochs, validated after 14, 28, 40
        (160, (8, 3)),  # 5 batches per epoch
        (320, (4, 2)),  # 4 epochs: after 2 and 4 (never more than evals)
        (4000, (1, 1)),  # the budget fits in one epoch
    ],
)
def test_step_budget_schedule_by_hand(n_samples, expected):
    settings = FinetuneSettings(0, 32, steps=40, evals=3)
    assert settings.schedule(n_samples) == expected


@pytest.mark.parametrize("n_samples", [1, 8, 35, 84, 200, 699, 5000])
@pytest.mark.parametrize("evals", [1, 2, 3, 5])
def test_step_budget_validates_at_most_evals_times_ending_with_the_last(n_samples, evals):
    settings = FinetuneSettings(0, 4, steps=90, evals=evals)
    epochs, every = settings.schedule(n_samples)
    when = validated_epochs(epochs, every)
    assert 1 <= len(when) <= evals
    assert when[-1] == epochs
    # and about the step budget: at least 90 steps, less than one epoch more
    per_epoch = max(1, n_samples // 4)
    assert 90 <= epochs * per_epoch < 90 + per_epoch


def test_epoch_schedule_is_used_as_given_without_steps():
    assert FinetuneSettings(240, 32, eval_every=5).schedule(1000) == (240, 5)


def test_schedule_refuses_an_empty_training_set():
    with pytest.raises(ValueError, match="n_samples"):
        finetune_settings("demo", "nih").schedule(0)


@pytest.mark.parametrize("profile", ["smoke", "demo", "paper"])
@pytest.mark.parametrize("task", ["luna", "nih"])
def test_classifiers_pool_a_map_of_at_least_two_per_axis(profile, task):
    """The pooled level must keep spatial context: a 1^3 bottleneck (depth 5 on a 32^3
    candidate) normalises one number per channel and sample in batch norm."""
    import torch

    from pcrl_lib.models.downstream import Classifier
    from pcrl_lib.profiles import classifier_input_shape

    settings = finetune_settings(profile, task)
    shape = classifier_input_shape(profile, task)
    model = Classifier(len(shape) - 1, shape[0], 1, depth=settings.depth, width=settings.width)
    with torch.no_grad():
        pooled = model.encoder(torch.zeros(1, *shape))[-1]
    assert min(pooled.shape[2:]) >= 2, (profile, task, tuple(pooled.shape))


def test_demo_splits_are_sized_for_a_point_of_standard_error():
    """Test-split sizes behind the demo's standard errors (measured, README): per-case Dice
    varies ~5x more on BraTS than on LiTS, hence 126 BraTS test volumes and 20 LiTS ones."""
    from pcrl_lib.profiles import DATA

    def test_cases(role):
        opts = DATA["demo"][role][1]
        return round(opts["n"] * opts["fractions"][2])

    luna = DATA["demo"]["luna"][1]
    assert luna["fractions"][2] >= 0.6 and luna["max_nodules"] >= 16
    assert test_cases("nih") >= 1000 and test_cases("lits") >= 20 and test_cases("brats") >= 120
