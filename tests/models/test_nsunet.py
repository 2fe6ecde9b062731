import pytest
import torch

from pcrl_lib.models import NSUNet, nsunet
from pcrl_lib.models.nsunet import CHECKPOINT_CHOICES, DecoderBlock, Up


@pytest.mark.parametrize(
    ("args", "shape", "expected"),
    [
        # (spatial_dims, in_ch, depth, width) / input / {rate: (channels, *spatial)}
        (
            (3, 1, 5, 0.125),
            (2, 1, 64, 64, 32),
            {
                32: (64, 2, 2, 1),
                16: (64, 4, 4, 2),
                8: (64, 8, 8, 4),
                4: (32, 16, 16, 8),
                2: (16, 32, 32, 16),
                1: (8, 64, 64, 32),
            },
        ),
        (
            (3, 1, 5, 0.125),
            (2, 1, 16, 16, 16),
            {
                32: (64, 1, 1, 1),
                16: (64, 1, 1, 1),
                8: (64, 2, 2, 2),
                4: (32, 4, 4, 4),
                2: (16, 8, 8, 8),
                1: (8, 16, 16, 16),
            },
        ),
        (
            (3, 4, 3, 0.25),
            (1, 4, 32, 32, 32),
            {8: (128, 4, 4, 4), 4: (64, 8, 8, 8), 2: (32, 16, 16, 16), 1: (16, 32, 32, 32)},
        ),
        (
            (2, 3, 5, 1.0),
            (2, 3, 64, 64),
            {
                32: (512, 2, 2),
                16: (256, 4, 4),
                8: (128, 8, 8),
                4: (64, 16, 16),
                2: (32, 32, 32),
                1: (16, 64, 64),
            },
        ),
    ],
)
def test_pyramid_shapes(args, shape, expected):
    net = NSUNet(*args)
    pyramid = net(torch.zeros(shape))
    assert {r: tuple(t.shape[1:]) for r, t in pyramid.items()} == expected
    assert {r: c for r, (c, *_) in expected.items()} == net.level_channels


def test_finest_rate_skips_finer_levels():
    net = NSUNet(3, 1, depth=5, width=0.125)
    calls = []
    for i, block in enumerate(net.blocks):
        block.register_forward_hook(lambda *_, i=i: calls.append(i))
    pyramid = net(torch.zeros(1, 1, 64, 64, 32), finest_rate=8)
    assert sorted(pyramid) == [8, 16, 32]
    assert calls == [0, 1]  # only the blocks to rates 16 and 8 ran


def test_skip_connections_change_the_decoder_only():
    plain = NSUNet(3, 1, depth=5, width=0.125)
    skip = NSUNet(3, 1, depth=5, width=0.125, skip=True)
    assert plain.blocks[-1].conv1.conv.in_channels == 16  # rate-2 decoder channels
    assert skip.blocks[-1].conv1.conv.in_channels == 16 + 8  # + encoder level-0 channels
    assert sum(p.numel() for p in skip.encoder.parameters()) == sum(
        p.numel() for p in plain.encoder.parameters()
    )
    out = skip(torch.zeros(2, 1, 16, 16, 16))  # 16^3 locals: sizes 1 -> 2 are resized
    assert out[1].shape == (2, 8, 16, 16, 16)


def test_2d_skip_has_no_full_resolution_encoder_feature():
    net = NSUNet(2, 3, skip=True)
    assert net.blocks[-1].conv1.conv.in_channels == 32  # nothing to concatenate at rate 1
    assert net(torch.zeros(1, 3, 64, 64))[1].shape == (1, 16, 64, 64)


def test_non_skip_output_depends_only_on_the_bottleneck():
    torch.manual_seed(0)
    net = NSUNet(3, 1, depth=3, width=0.125).eval()
    x = torch.randn(1, 1, 32, 32, 32)
    bottleneck = net.encoder(x)[-1]
    h = bottleneck
    for k, block in zip(range(2, -1, -1), net.blocks, strict=True):
        h = block(h, [32 // 2**k] * 3)
    assert torch.allclose(net(x)[1], h)


def test_bad_input_is_named():
    net = NSUNet(3, 1, depth=3, width=0.125)
    with pytest.raises(ValueError, match=r"expected input \(B, 1"):
        net(torch.zeros(1, 2, 16, 16, 16))
    with pytest.raises(ValueError, match="finest_rate"):
        net(torch.zeros(1, 1, 16, 16, 16), finest_rate=3)
    with pytest.raises(ValueError, match="decoder_channels"):
        NSUNet(3, 1, depth=3, decoder_channels=[8, 16])


@pytest.mark.parametrize(
    ("dims", "checkpoint", "skip"),
    [(2, "all", False), (3, "encoder", False), (3, "all", False), (3, "all", True)],
)
def test_checkpointing_full_resolution_changes_nothing_but_memory(dims, checkpoint, skip):
    def run(checkpoint):
        torch.manual_seed(0)
        kw = {"depth": 3, "width": 0.125} if dims == 3 else {}
        net = NSUNet(dims, 1 if dims == 3 else 3, skip=skip, checkpoint=checkpoint, **kw)
        calls = {"decoder": 0, "encoder": 0}
        net.blocks[-1].register_forward_pre_hook(
            lambda *_: calls.__setitem__("decoder", 1 + calls["decoder"])
        )
        if dims == 3:
            net.encoder.stages[0].register_forward_pre_hook(
                lambda *_: calls.__setitem__("encoder", 1 + calls["encoder"])
            )
        x = torch.randn(2, net.in_channels, *[16] * dims)
        net(x)[1].square().mean().backward()
        grads = {n: p.grad.clone() for n, p in net.named_parameters()}
        # recomputed in the backward pass: the decoder level with "all", the stage with both
        assert calls["decoder"] == (2 if checkpoint == "all" else 1)
        assert calls["encoder"] == (0 if dims == 2 else 2 if checkpoint != "none" else 1)
        return grads, net.state_dict()

    g0, s0 = run("none")
    g1, s1 = run(checkpoint)
    assert all(torch.allclose(g0[n], g1[n], atol=1e-6) for n in g0)
    assert all(torch.equal(s0[k], s1[k]) for k in s0)  # running stats updated exactly once


@pytest.mark.parametrize(
    ("dims", "kw", "shape"),
    [
        (3, {"depth": 3, "width": 0.25}, (2, 1, 16, 16, 8)),
        (3, {"depth": 3, "width": 0.25, "skip": True}, (2, 1, 16, 16, 8)),
        (2, {}, (2, 3, 64, 64)),
        (2, {"skip": True}, (2, 3, 64, 64)),
    ],
)
def test_fused_upsample_conv_decoder_is_the_same_function(monkeypatch, dims, kw, shape):
    torch.manual_seed(0)
    net = NSUNet(dims, shape[1], **kw).double()
    x = torch.randn(*shape, dtype=torch.float64)

    def run():
        y = net(x)[1]
        return y, torch.autograd.grad(y.square().sum(), list(net.parameters()))

    fused_levels = []
    real_fuse = DecoderBlock._fuse
    monkeypatch.setattr(
        DecoderBlock,
        "_fuse",
        lambda self, *a: fused_levels.append(real_fuse(self, *a)) or fused_levels[-1],
    )
    y1, g1 = run()
    assert fused_levels[-1]  # the full-resolution level takes the fused path
    monkeypatch.setattr(DecoderBlock, "_fuse", lambda self, *a: False)
    y0, g0 = run()
    torch.testing.assert_close(y1, y0)
    scale = max(g.abs().max() for g in g0)  # (biases before a BN have ~0 gradients)
    for a, b in zip(g1, g0, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10 * scale, rtol=1e-7)


def test_defaults_and_error_messages():
    net3, net2 = NSUNet(3, depth=3, width=0.125), NSUNet(2, 3)
    assert net3.in_channels == 1  # CT
    assert {b.up.mode for b in net3.blocks} == {"transpose"}  # the official 3D decoder
    assert {b.up.mode for b in net2.blocks} == {"nearest"}  # the official 2D decoder
    block = DecoderBlock(3, 8, 4)  # a block alone: no skip, transposed-conv up-sampling
    assert (block.skip_channels, block.conv1.conv.in_channels, block.up.mode) == (0, 8, "transpose")
    x = torch.randn(1, 1, 16, 16, 16)
    assert 1 in net3.decode(net3.encoder(x), x.shape[2:])  # decodes to full resolution
    cases = [
        (lambda: NSUNet(3, checkpoint="some"),
         f"checkpoint must be one of {CHECKPOINT_CHOICES}, got 'some'"),
        (lambda: Up(3, 4, "bilinear"), "upsample mode must be 'transpose' or 'nearest', got 'bilinear'"),
        (lambda: DecoderBlock(3, 8, 4, skip_channels=2)(torch.zeros(1, 8, 2, 2, 2), (4, 4, 4)),
         "this decoder block was built with skip channels; got no skip"),
        (lambda: DecoderBlock(3, 8, 4)(torch.zeros(1, 8, 2, 2, 2), (4, 4, 4), torch.zeros(1, 2, 4, 4, 4)),
         "this decoder block was built without skip channels; got a skip"),
        (lambda: net3(torch.zeros(1, 2, 16, 16, 16)),
         "expected input (B, 1, ***) with 3 spatial dims, got (1, 2, 16, 16, 16)"),
    ]  # fmt: skip
    for make, message in cases:
        with pytest.raises(ValueError) as err:
            make()
        assert str(err.value) == message


def test_nearest_upsampling_doubles_every_pixel():
    x = torch.arange(2 * 3 * 2 * 3, dtype=torch.float32).reshape(2, 3, 2, 3)
    expected = x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    assert torch.equal(Up(2, 3, "nearest")(x), expected)


def test_odd_sizes_decode_to_the_encoders_sizes():
    # the ResNet-18 encoder has no full-resolution feature: the decoder sizes that level
    # from the input (65, not the 66 that up-sampling the rate-2 feature gives)
    pyramid = NSUNet(2, 3).eval()(torch.zeros(1, 3, 65, 65))
    assert {r: tuple(t.shape[2:]) for r, t in pyramid.items()} == {
        32: (3, 3), 16: (5, 5), 8: (9, 9), 4: (17, 17), 2: (33, 33), 1: (65, 65)
    }  # fmt: skip


def test_the_fusion_decision_sees_the_blocks_sizes(monkeypatch):
    calls = []
    monkeypatch.setattr(nsunet, "upsample_conv_is_cheaper", lambda *a: calls.append(a) or False)
    # 3D, transposed up-sampling, skip: coarse voxels count the batch (2 x 3*4*5); the
    # up-sampled part of conv1 has the block's 8 input channels, not conv1's 8 + 2
    block3 = DecoderBlock(3, 8, 4, skip_channels=2, upsample="transpose")
    x3, skip3 = torch.zeros(2, 8, 3, 4, 5), torch.zeros(2, 2, 6, 8, 10)
    block3(x3, (6, 8, 10), skip3)
    assert calls == [(2 * 3 * 4 * 5, 8, 8, 4, 3, True)]
    block2 = DecoderBlock(2, 6, 5, upsample="nearest")
    block2(torch.zeros(3, 6, 2, 7), (4, 14))
    assert calls[1:] == [(3 * 2 * 7, 6, 6, 5, 2, False)]
    # a size other than exactly 2S, or an axis under 3 voxels, never reaches the decision
    calls.clear()
    block3(x3, (7, 8, 10), torch.zeros(2, 2, 7, 8, 10))
    block3(torch.zeros(2, 8, 1, 4, 5), (2, 8, 10), torch.zeros(2, 2, 2, 8, 10))
    assert calls == []
