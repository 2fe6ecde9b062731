from dataclasses import replace

import numpy as np
import pytest
import torch

from pcrl_lib.pipeline import Intensity, ViewGenerator, paper_view_generator


def _ct(shape=(140, 130, 110), seed=0):
    rng = np.random.default_rng(seed)
    vol = np.full(shape, -1000.0, dtype=np.float32)
    vol[10:-10, 10:-10, :] = 40.0
    vol[30:70, 30:100, 20:90] = -800.0  # a lung
    return (vol + rng.normal(0, 10, shape).astype(np.float32))[None]


@pytest.mark.parametrize("crops", ["sub", "multi", "none"])
def test_3d_sample_shapes_and_ranges(crops):
    sample = paper_view_generator(3, crops)(_ct(), seed=0)
    for k in ("global1", "global2", "target1", "target2"):
        assert sample[k].shape == (1, 64, 64, 32)
    assert float(sample["target1"].min()) >= 0.0 and float(sample["target1"].max()) <= 1.0
    if crops == "none":
        assert "locals" not in sample
    else:
        assert sample["locals"].shape == (6, 1, 16, 16, 16)
    assert not torch.allclose(sample["global1"], sample["target1"])  # inputs are corrupted


def test_2d_sample_shapes():
    gen = paper_view_generator(2, global_out=(64, 64), local_out=(32, 32))
    sample = gen(np.random.rand(3, 128, 128).astype(np.float32), seed=1)
    assert sample["global1"].shape == (3, 64, 64)
    assert sample["locals"].shape == (6, 3, 32, 32)


def test_same_seed_same_sample_and_different_seed_differs():
    gen = paper_view_generator(3)
    a, b, c = gen(_ct(), 3), gen(_ct(), 3), gen(_ct(), 4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["target1"], c["target1"])


def test_torchio_backend_gives_the_same_structure():
    sample = replace(paper_view_generator(3), backend="torchio")(_ct(), seed=0)
    assert sample["global1"].shape == (1, 64, 64, 32)
    assert sample["locals"].shape == (6, 1, 16, 16, 16)


def test_intensity_window():
    x = torch.tensor([-2000.0, -1000.0, 0.0, 1000.0, 3000.0])
    assert Intensity()(x).tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]
    assert torch.equal(Intensity(None)(x), x)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="spatial axes"):
        paper_view_generator(3)(np.zeros((140, 130, 110), dtype=np.float32), seed=0)
    with pytest.raises(ValueError, match="backend"):
        ViewGenerator(backend="monai")
