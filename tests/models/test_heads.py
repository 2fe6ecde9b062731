import pytest
import torch

from pcrl_lib.models import ComparisonHead, Predictor, RestorationHead


def test_comparison_head_is_batchnorm_of_global_average():
    head = ComparisonHead(4).eval()
    head.bn.running_mean.fill_(1.0)
    head.bn.running_var.fill_(4.0)
    phi = torch.arange(2 * 4 * 8, dtype=torch.float32).view(2, 4, 2, 2, 2)
    gap = phi.mean(dim=(2, 3, 4))
    expected = (gap - 1.0) / torch.sqrt(torch.tensor(4.0 + head.bn.eps))
    assert torch.allclose(head(phi), expected)


@pytest.mark.parametrize(("d_in", "d_out"), [(8, 8), (8, 16)])
def test_predictor_shapes(d_in, d_out):
    pred = Predictor(d_in, d_out)
    assert pred.fc1.out_features == 2 * d_in
    assert pred(torch.randn(5, d_in)).shape == (5, d_out)


@pytest.mark.parametrize("style", ["paper", "light"])
@pytest.mark.parametrize("dims", [2, 3])
def test_restoration_head_shapes_and_activation(style, dims):
    head = RestorationHead(dims, 8, 3, activation="sigmoid", style=style)
    y = head(torch.randn(2, 8, *[4] * dims)).detach()
    assert y.shape == (2, 3, *[4] * dims)
    assert float(y.min()) >= 0 and float(y.max()) <= 1


def test_restoration_head_rejects_unknown_options():
    with pytest.raises(ValueError, match="activation"):
        RestorationHead(3, 8, 1, activation="tanh")
    with pytest.raises(ValueError, match="style"):
        RestorationHead(3, 8, 1, style="heavy")
