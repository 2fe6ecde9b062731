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
