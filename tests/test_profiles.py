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
