import numpy as np
import pytest

from pcrl_lib.data.phantom import phantom_ct


def test_phantom_is_deterministic_and_ct_like():
    a, b = phantom_ct((64, 64, 48), seed=3), phantom_ct((64, 64, 48), seed=3)
    assert a.shape == (1, 64, 64, 48) and a.dtype == np.float32
    assert np.array_equal(a, b)
    assert (a < -900).mean() > 0.2  # air around the body
    assert ((a > -900) & (a < -700)).mean() > 0.05  # lungs
    assert (a > 500).any()  # bone


def test_phantom_rejects_bad_shapes():
    with pytest.raises(ValueError, match="3D shape"):
        phantom_ct((64, 64))
