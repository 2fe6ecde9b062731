"""Models Genesis corruptions: what each does, and their probabilities over many draws."""

import numpy as np
import pytest

from pcrl_lib.methods.corruptions import (
    CORRUPTIONS,
    GenesisConfig,
    bezier_intensity,
    genesis_pair,
    inpaint,
    local_shuffle,
    one_corruption,
    outpaint,
    random_flips,
)


@pytest.fixture
def image():
    return np.random.default_rng(0).random((1, 24, 24, 12)).astype(np.float32)


def test_bezier_is_monotone_map_of_unit_interval():
    rng = np.random.default_rng(1)
    ramp = np.linspace(0, 1, 101, dtype=np.float32)[None]
    for _ in range(20):
        out = bezier_intensity(ramp, rng)[0]
        d = np.diff(out)
        assert (d >= -1e-6).all() or (d <= 1e-6).all()  # increasing, or inverted
        assert out.min() >= 0 and out.max() <= 1


def test_local_shuffle_moves_values_only_within_windows(image):
    out = local_shuffle(image, np.random.default_rng(2), n_blocks=200)
    assert not np.array_equal(out, image)
    assert np.isin(out, image).all()  # every value comes from the input
    np.testing.assert_allclose(out.mean(), image.mean(), atol=0.02)


def test_inpaint_keeps_the_border_outpaint_keeps_an_inner_box(image):
    rng = np.random.default_rng(3)
    inp = inpaint(image, rng)
    assert np.array_equal(inp[:, :3], image[:, :3]) and not np.array_equal(inp, image)
    out = outpaint(image, rng)
    kept = out == image
    assert 0.02 < kept.mean() < 0.9 and not kept[:, 0, 0, 0]


def test_flips_move_input_and_target_together(image):
    x, y = random_flips(image, image * 2, np.random.default_rng(4), rate=1.0)
    np.testing.assert_array_equal(x * 2, y)


def test_probabilities_over_many_draws():
    rng = np.random.default_rng(5)
    img = np.random.default_rng(6).random((1, 12, 12, 12)).astype(np.float32)
    cfg = GenesisConfig(shuffle_blocks=5)
    counts = dict.fromkeys(CORRUPTIONS, 0)
    n = 1500
    for _ in range(n):
        _, _, applied = genesis_pair(img, rng, cfg)
        for k, v in applied.items():
            counts[k] += v
    rates = {k: v / n for k, v in counts.items()}
    assert rates["nonlinear"] == pytest.approx(0.9, abs=0.03)
    assert rates["local_shuffle"] == pytest.approx(0.5, abs=0.04)
    assert rates["inpaint"] == pytest.approx(0.9 * 0.2, abs=0.03)
    assert rates["outpaint"] == pytest.approx(0.9 * 0.8, abs=0.03)


def test_one_corruption_is_exactly_one_and_uniform(image):
    rng = np.random.default_rng(7)
    names = [one_corruption(image, rng, shuffle_blocks=5)[1] for _ in range(400)]
    freq = {k: names.count(k) / 400 for k in CORRUPTIONS}
    assert all(abs(f - 0.25) < 0.07 for f in freq.values())


def test_2d_images_with_channels():
    img = np.random.default_rng(8).random((3, 32, 32)).astype(np.float32)
    x, y, _ = genesis_pair(img, np.random.default_rng(9), GenesisConfig(shuffle_blocks=20))
    assert x.shape == y.shape == (3, 32, 32)
