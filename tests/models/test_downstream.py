import pytest
import torch

from pcrl_lib.methods import PCRLv2, pcrlv2_config
from pcrl_lib.models.downstream import Classifier, SegmentationUNet, load_pretrained_encoder


@pytest.mark.parametrize(
    ("dims", "in_ch", "shape", "n"),
    [(3, 1, (24, 24, 24), 1), (2, 3, (64, 64), 14), (3, 4, (16, 16, 16), 3)],
)
def test_classifier_shapes(dims, in_ch, shape, n):
    model = Classifier(dims, in_ch, n, depth=3, width=0.125)
    assert model(torch.randn(2, in_ch, *shape)).shape == (2, n)


@pytest.mark.parametrize(("dims", "in_ch", "shape"), [(3, 4, (32, 32, 16)), (2, 1, (64, 64))])
def test_segmentation_unet_shapes_and_skips(dims, in_ch, shape):
    model = SegmentationUNet(dims, in_ch, 3, depth=3, width=0.125)
    assert model.net.skip
    assert model(torch.randn(2, in_ch, *shape)).shape == (2, 3, *shape)


def test_encoder_from_pcrlv2_pretraining_arrives_unchanged(tmp_path):
    pre = PCRLv2(pcrlv2_config("paper", 3, in_channels=4, depth=3, scales=3, width=0.125))
    path = tmp_path / "pretrained.pt"
    torch.save({"model": pre.state_dict()}, path)
    seg = SegmentationUNet(3, 4, 3, depth=3, width=0.125)
    head_before = seg.head.weight.clone()
    report = load_pretrained_encoder(seg, path)
    assert report.missing == []
    for k, v in pre.net.encoder.state_dict().items():
        assert torch.equal(seg.encoder.state_dict()[k], v)
    assert torch.equal(seg.head.weight, head_before)  # the decoder and head stay new


def test_bad_class_count():
    with pytest.raises(ValueError, match="n_classes"):
        Classifier(3, 1, 0)
    with pytest.raises(ValueError, match="n_classes"):
        SegmentationUNet(3, 1, 0)


def test_classifier_logits_are_fp32_under_autocast_so_close_scores_do_not_tie():
    torch.manual_seed(0)
    model = Classifier(3, 1, 1, depth=3, width=0.125)  # train mode: batch-normalised features
    with torch.no_grad():
        model.fc.weight.mul_(1e-2)  # a barely trained head: logits close together ...
        model.fc.bias.fill_(20.0)  # ... where bf16 steps by 0.125
    x = torch.randn(16, 1, 16, 16, 16)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
    assert logits.dtype == torch.float32
    assert len(torch.unique(logits)) >= 14  # bf16 logits would read 1-3 values
    assert len(torch.unique(logits.to(torch.bfloat16))) < 4
