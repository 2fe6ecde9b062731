import pytest
import torch
from torch import nn

from pcrl_lib.engine.inference import predict_volume


def test_patchwise_prediction_equals_whole_volume_for_a_pointwise_model():
    torch.manual_seed(0)
    model = nn.Conv3d(2, 3, kernel_size=1)
    volume = torch.randn(2, 20, 18, 13)
    whole = torch.sigmoid(model(volume[None]))[0].detach()
    for overlap in (0, 4):
        out = predict_volume(model, volume, (8, 8, 8), overlap=overlap, batch_size=3)
        assert out.shape == (3, 20, 18, 13)
        assert torch.allclose(out, whole, atol=1e-5)


def test_bad_volume_shape():
    with pytest.raises(ValueError, match=r"\(C, X, Y, Z\)"):
        predict_volume(nn.Identity(), torch.zeros(4, 4, 4), (2, 2, 2))


def test_volume_smaller_than_patch_is_padded_and_cropped_back():
    import torch

    from pcrl_lib.engine.inference import predict_volume

    model = torch.nn.Conv3d(1, 1, 1)
    torch.nn.init.constant_(model.weight, 1.0)
    torch.nn.init.zeros_(model.bias)
    volume = torch.randn(1, 5, 7, 3)
    out = predict_volume(model, volume, (8, 8, 4))
    assert out.shape == (1, 5, 7, 3)
    torch.testing.assert_close(out, torch.sigmoid(volume))
