import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pcrl_lib.methods import PCRLv2, PCRLv2Config, pcrlv2_config
from pcrl_lib.methods.pcrlv2 import cosine_weight


def tiny(**overrides) -> PCRLv2:
    return PCRLv2(pcrlv2_config("paper", 3, width=0.125, **overrides))


def batch(b=2, n_locals=3, size=(32, 32, 32), seed=0):
    g = torch.Generator().manual_seed(seed)
    out = {
        k: torch.rand(b, 1, *size, generator=g)
        for k in ("global1", "global2", "target1", "target2")
    }
    out["locals"] = torch.rand(b, n_locals, 1, 16, 16, 16, generator=g)
    return out


def test_paper_and_official_presets():
    paper = pcrlv2_config("paper", 3)
    assert (paper.depth, paper.scales, paper.restore_views, paper.scale_sampling) == (
        5,
        5,
        2,
        "per_step",
    )
    official = PCRLv2(pcrlv2_config("official", 3))
    assert official.compare_rates == [4, 2, 1]
    assert sum(p.numel() for p in official.parameters()) == 17_111_434  # the released model
    assert pcrlv2_config("official", 2).scales == 5
    with pytest.raises(ValueError, match="preset"):
        pcrlv2_config("mine", 3)


# every field of each preset, written out by hand: the paper's statement (Sec. 3, 4.3) and
# what RL4M/PCRLv2's train_2d.py / train_3d.py compute (README, DIFFERENCES)
_DEFAULTS = dict(width=1.0, skip=False, restoration=True, comparison=True,
                 comparison_mode="pairwise", crops="sub", checkpoint="none")  # fmt: skip
PRESET_FIELDS = {
    ("paper", 3): dict(spatial_dims=3, in_channels=1, depth=5, scales=5, restore_views=2,
                       scale_sampling="per_step", full_resolution_mse=False,
                       restore_activation="none", restore_head="paper", preset="paper"),
    ("paper", 2): dict(spatial_dims=2, in_channels=3, depth=5, scales=5, restore_views=2,
                       scale_sampling="per_step", full_resolution_mse=False,
                       restore_activation="none", restore_head="paper", preset="paper"),
    ("official", 3): dict(spatial_dims=3, in_channels=1, depth=3, scales=3, restore_views=1,
                          scale_sampling="per_term", full_resolution_mse=True,
                          restore_activation="sigmoid", restore_head="light",
                          preset="official"),
    ("official", 2): dict(spatial_dims=2, in_channels=3, depth=5, scales=5, restore_views=1,
                          scale_sampling="per_term", full_resolution_mse=True,
                          restore_activation="none", restore_head="paper",
                          preset="official"),
}  # fmt: skip


@pytest.mark.parametrize(("preset", "dims"), sorted(PRESET_FIELDS))
def test_every_field_of_each_preset(preset, dims):
    cfg = pcrlv2_config(preset, dims)
    assert cfg.to_dict() == {**_DEFAULTS, **PRESET_FIELDS[preset, dims]}
    # an override changes that field only, and keeps the preset's name
    wide = pcrlv2_config(preset, dims, width=0.5)
    assert wide.to_dict() == {**cfg.to_dict(), "width": 0.5} and wide.preset == preset


def test_the_default_preset_is_the_paper_in_3d():
    assert pcrlv2_config().to_dict() == pcrlv2_config("paper", 3).to_dict()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("scales", 4, "scales"),
        ("comparison_mode", "diagonal", "comparison_mode"),
        ("crops", "tiles", "crops"),
        ("restore_views", 3, "restore_views"),
        ("restoration", False, None),
    ],
)
def test_config_validation(field, value, message):
    if message is None:
        with pytest.raises(ValueError, match="both off"):
            PCRLv2Config(restoration=False, comparison=False)
        return
    with pytest.raises(ValueError, match=message):
        PCRLv2Config(**{field: value})
    with pytest.raises(ValueError, match="depth"):
        PCRLv2Config(depth=3, scales=5)


def test_full_method_returns_every_term():
    torch.manual_seed(0)
    out = tiny()(batch())
    assert set(out) == {
        "loss",
        "restoration",
        "global_global",
        "local_global",
        "collapse_std",
        "scale",
    }
    expected = out["restoration"] + out["global_global"] + out["local_global"]
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert int(out["scale"]) in (16, 8, 4, 2, 1)


def test_restoration_and_comparison_switches():
    torch.manual_seed(0)
    rest_only = tiny(comparison=False)
    assert len(rest_only.comparison_heads) == 0 and len(rest_only.predictors) == 0
    out = rest_only({k: v for k, v in batch().items() if k != "locals"})
    assert set(out) == {"loss", "restoration", "scale"}
    comp_only = tiny(restoration=False)
    assert len(comp_only.restoration_heads) == 0
    out = comp_only({k: v for k, v in batch().items() if not k.startswith("target")})
    assert "restoration" not in out and "global_global" in out


def test_scales_switch_selects_the_rates():
    one = tiny(scales=1)
    assert (one.restore_rates, one.compare_rates) == ([1], [32])
    torch.manual_seed(0)
    assert int(one(batch())["scale"]) == 32  # comparison on the encoder output
    three = tiny(scales=3)
    assert three.compare_rates == [4, 2, 1] and sorted(map(int, three.restoration_heads)) == [
        1,
        2,
        4,
    ]
    five = tiny(scales=5)
    assert five.compare_rates == [16, 8, 4, 2, 1]


def test_crops_none_drops_the_local_term():
    torch.manual_seed(0)
    out = tiny(crops="none")({k: v for k, v in batch().items() if k != "locals"})
    assert "local_global" not in out and "global_global" in out
    with pytest.raises(KeyError, match="locals"):
        tiny(crops="sub")({k: v for k, v in batch().items() if k != "locals"})


def test_crossed_comparison_pairs_different_scales():
    model = tiny(comparison_mode="crossed", scales=3)
    assert sorted(model.predictors) == ["1to2", "1to4", "2to1", "2to4", "4to1", "4to2"]
    assert model.predictors["4to1"].fc2.out_features == model.net.level_channels[1]
    for seed in range(10):
        torch.manual_seed(seed)
        a, b = model._draw_pair(model._draw_scale_index())
        assert a != b
    torch.manual_seed(0)
    assert torch.isfinite(model(batch())["loss"])


def test_skip_switch_builds_a_unet():
    assert tiny(skip=True).net.skip and not tiny().net.skip
    torch.manual_seed(0)
    assert torch.isfinite(tiny(skip=True)(batch())["loss"])


def test_only_the_needed_pyramid_levels_are_decoded(monkeypatch):
    model = tiny(crops="none")
    monkeypatch.setattr(model, "_draw_scale_index", lambda: 0)  # rate 16
    calls = []
    for i, block in enumerate(model.net.blocks):
        block.register_forward_hook(lambda *_, i=i: calls.append(i))
    model({k: v for k, v in batch().items() if k != "locals"})
    assert calls == [0, 0]  # each view decodes the rate-16 level only


def test_official_preset_restores_only_the_first_view_and_decays_the_scale_term():
    torch.manual_seed(0)
    model = PCRLv2(pcrlv2_config("official", 3, width=0.125))
    data = {k: v for k, v in batch().items() if k != "target2"}  # view 2 is never restored
    out = model(data, progress=0.0)
    assert {"restoration", "global_global", "local_global"} <= set(out)
    assert model.final_head is not None
    assert cosine_weight(0.0) == 1.0 and cosine_weight(1.0) == pytest.approx(0.0)
    assert cosine_weight(0.5) == pytest.approx(0.5)


def test_gradients_reach_encoder_and_heads():
    torch.manual_seed(0)
    model = tiny(scales=3)
    model(batch())["loss"].backward()
    assert model.net.encoder.stages[0][0].conv.weight.grad.abs().sum() > 0
    used = [p for p in model.predictors.values() if p.fc1.weight.grad is not None]
    assert used, "no predictor received a gradient"


def test_same_seed_same_result():
    def run():
        torch.manual_seed(1)
        model = tiny()
        torch.manual_seed(2)
        return model(batch())["loss"].item()

    assert run() == run()


def test_loss_falls_over_20_steps(monkeypatch):
    torch.manual_seed(0)
    model = tiny(scales=3)
    monkeypatch.setattr(model, "_draw_scale_index", lambda: 2)  # one scale: comparable steps
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    data = batch()
    losses = []
    for _ in range(20):
        out = model(data)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.05, losses


def test_missing_keys_are_named():
    with pytest.raises(KeyError, match="global2"):
        tiny()({"global1": torch.zeros(2, 1, 32, 32, 32)})


def test_official_restoration_only_never_decodes_the_second_view():
    torch.manual_seed(0)
    model = PCRLv2(pcrlv2_config("official", 3, width=0.125, comparison=False))
    seen = []
    model.net.register_forward_hook(lambda mod, args, out: seen.append(args[0].shape[0]))
    out = model({k: batch()[k] for k in ("global1", "global2", "target1")})
    assert set(out) == {"loss", "restoration", "scale"} and int(out["scale"]) in (4, 2, 1)
    assert len(seen) == 1  # view 1 only


def test_official_preset_weights_the_scale_term_by_the_cosine_of_progress(monkeypatch):
    """restoration(p) = full-resolution MSE + 0.5 (1 + cos(pi p)) x MSE at the sampled scale:
    measured at p = 0, 0.25, 0.5, 1 on one batch with the scale fixed, the scale term's weight
    is 1, 0.854, 0.5, 0 - a constant weight or a linear decay fails."""
    torch.manual_seed(0)
    model = PCRLv2(pcrlv2_config("official", 3, width=0.125))
    monkeypatch.setattr(model, "_draw_scale_index", lambda: 0)
    data = {k: v for k, v in batch().items() if k != "target2"}
    rest = {}
    for p in (0.0, 0.25, 0.5, 1.0):
        torch.manual_seed(1)
        rest[p] = float(model(data, progress=p)["restoration"].detach())
    scale_term = rest[0.0] - rest[1.0]
    assert scale_term > 1e-4  # the term is there at the start and gone at the end
    for p, weight in ((0.25, 0.5 * (1 + np.cos(np.pi / 4))), (0.5, 0.5)):
        assert rest[p] == pytest.approx(rest[1.0] + weight * scale_term, rel=1e-5, abs=1e-6)


def test_cosine_weight_is_clamped_to_the_run():
    assert cosine_weight(0.5) == pytest.approx(0.5)
    assert cosine_weight(-1.0) == pytest.approx(1.0) and cosine_weight(1.5) == pytest.approx(0.0)
    assert cosine_weight(2.0) == pytest.approx(0.0)


@pytest.mark.parametrize("activation", ["sigmoid", "none"])
def test_full_resolution_head_applies_its_activation(activation):
    torch.manual_seed(0)
    model = PCRLv2(
        pcrlv2_config("official", 3, width=0.125, depth=3, restore_activation=activation)
    )
    c = model.final_head.in_channels
    features = 5 * torch.randn(1, c, 4, 4, 4)
    raw = model.final_head(features)
    out = model.final_head_out({1: features})
    assert torch.equal(out, torch.sigmoid(raw) if activation == "sigmoid" else raw)


def test_config_to_dict_is_json_ready_and_complete():
    import dataclasses
    import json

    cfg = pcrlv2_config("official", 3)
    d = cfg.to_dict()
    assert d == dataclasses.asdict(cfg) and json.loads(json.dumps(d))["depth"] == cfg.depth
    assert PCRLv2Config(**d) == cfg


def test_config_accepts_every_documented_value_and_names_the_broken_rule():
    PCRLv2Config(crops="multi")
    PCRLv2Config(comparison_mode="crossed", scales=3)
    with pytest.raises(ValueError) as err:
        PCRLv2Config(comparison_mode="crossed", scales=1)
    assert str(err.value) == "PCRLv2Config: crossed comparison needs at least 3 scales"
    with pytest.raises(ValueError) as err:
        PCRLv2Config(restoration=False, comparison=False)
    assert str(err.value) == "PCRLv2Config: restoration and comparison are both off"


def test_heads_and_predictor_names_follow_the_config():
    assert tiny().final_head is None  # the full-resolution head is the official code's
    assert PCRLv2(pcrlv2_config("official", 3, width=0.125, restoration=False)).final_head is None
    head3 = PCRLv2(pcrlv2_config("official", 3, width=0.125)).final_head
    head2 = PCRLv2(pcrlv2_config("official", 2)).final_head
    # the released out_tr (1x1x1) and smp's segmentation head (3x3, same size out)
    assert (head3.kernel_size, head3.padding) == ((1, 1, 1), (0, 0, 0))
    assert (head2.kernel_size, head2.padding) == ((3, 3), (1, 1))
    assert tiny(checkpoint="encoder").net.checkpoint == "encoder"
    # checkpoint keys: predictors are named by their rate, or "<a>to<b>" when crossed
    assert sorted(tiny(scales=3).predictors) == ["1", "2", "4"]


def test_restoration_term_by_hand(monkeypatch):
    """Paper: the mean of both views' MSE at the sampled rate (Eq. 4). Official: the
    full-resolution MSE plus 0.5 (1 + cos(pi p)) times view 1's MSE at the sampled rate."""
    data = batch()
    size = tuple(data["global1"].shape[2:])
    torch.manual_seed(0)
    paper = tiny()
    monkeypatch.setattr(paper, "_draw_scale_index", lambda: 1)  # rate 8
    got = paper(data)["restoration"].detach()
    with torch.no_grad():
        p1, p2 = paper.net(data["global1"]), paper.net(data["global2"])
        mse1 = F.mse_loss(paper._restore(p1, 8, size), data["target1"])
        mse2 = F.mse_loss(paper._restore(p2, 8, size), data["target2"])
    assert float(got) == pytest.approx(float((mse1 + mse2) / 2), rel=1e-5)
    torch.manual_seed(0)
    official = PCRLv2(pcrlv2_config("official", 3, width=0.125))
    monkeypatch.setattr(official, "_draw_scale_index", lambda: 0)  # rate 4
    got = official(data, progress=0.25)["restoration"].detach()
    with torch.no_grad():
        p1 = official.net(data["global1"])
        full = F.mse_loss(official.final_head_out(p1), data["target1"])
        scaled = F.mse_loss(official._restore(p1, 4, size), data["target1"])
    weight = 0.5 * (1 + np.cos(np.pi / 4))
    assert float(got) == pytest.approx(float(full + weight * scaled), rel=1e-5)


def test_progress_defaults_to_the_start_of_pre_training():
    model = PCRLv2(pcrlv2_config("official", 3, width=0.125))
    data = batch()
    out = {}
    for key, kw in (("default", {}), ("start", {"progress": 0.0}), ("end", {"progress": 1.0})):
        torch.manual_seed(3)
        out[key] = float(model(data, **kw)["restoration"].detach())
    assert out["default"] == out["start"] != out["end"]


def test_missing_keys_name_the_method_and_the_keys():
    data = batch()
    cases = [
        (tiny(), {"global1": data["global1"]}, "PCRLv2: batch lacks ['global2']"),
        (tiny(), {k: v for k, v in data.items() if k != "target2"}, "PCRLv2: batch lacks ['target2']"),
        (tiny(), {k: v for k, v in data.items() if k != "locals"},
         "PCRLv2 with crops='sub': batch lacks ['locals']"),
    ]  # fmt: skip
    for model, partial, message in cases:
        with pytest.raises(KeyError) as err:
            model(partial)
        assert err.value.args[0].startswith(message)


def test_collapse_std_is_the_spread_of_the_normalised_embedding_over_the_batch(monkeypatch):
    torch.manual_seed(0)
    model = tiny()
    monkeypatch.setattr(model, "_draw_scale_index", lambda: 0)  # rate 16
    seen = []
    model.comparison_heads["16"].register_forward_hook(lambda m, a, out: seen.append(out))
    got = model(batch(b=4))["collapse_std"]
    z1 = seen[0].detach()  # z(view 1, 16): the first embedding the step computes
    assert float(got) == pytest.approx(float(F.normalize(z1, dim=1).std(0).mean()), rel=1e-6)
    same = batch(b=1)
    same = {k: v.expand(3, *v.shape[1:]).clone() for k, v in same.items()}  # one image x 3
    assert float(model(same)["collapse_std"]) < 1e-6  # identical samples: collapsed


def test_every_local_view_meets_the_globals():
    torch.manual_seed(0)
    model = tiny().eval()  # running statistics: no batch-norm coupling between samples
    data = batch(n_locals=3)
    data["locals"].requires_grad_(True)
    model(data)["local_global"].backward()
    per_local = data["locals"].grad.abs().flatten(2).sum(2)  # (B, L)
    assert (per_local > 0).all()


@pytest.mark.parametrize(
    ("overrides", "n_locals", "draws"),
    [
        (dict(preset="paper"), 3, 1),  # one scale per step
        (dict(preset="paper", comparison_mode="crossed", scales=3), 3, 2),  # + its partner
        (dict(preset="official"), 3, 1 + 6),  # + one per local-global term (2 x 3)
        (dict(preset="official", crops="none"), 0, 1),
        (dict(preset="paper", comparison=False, comparison_mode="crossed", scales=3), 0, 1),
    ],
)
def test_random_draws_per_step(monkeypatch, overrides, n_locals, draws):
    kw = dict(overrides)
    model = PCRLv2(pcrlv2_config(kw.pop("preset"), 3, width=0.125, **kw))
    calls = []
    real = model._randint
    monkeypatch.setattr(model, "_randint", lambda n: calls.append(n) or real(n))
    data = batch(n_locals=max(n_locals, 1))
    if not n_locals:
        del data["locals"]
    torch.manual_seed(0)
    model(data)
    assert len(calls) == draws


def test_each_view_is_decoded_to_the_finest_rate_its_terms_use(monkeypatch):
    """Crossed, per-term scales, 3 locals (6 local-global terms; even terms meet view 1, odd
    view 2): view 1 needs gg[0] and the even terms' a, view 2 gg[1] and the odd terms' a, the
    locals every term's b - by hand 8, 1 and 2."""
    model = PCRLv2(
        pcrlv2_config("paper", 3, width=0.125, comparison_mode="crossed",
                      scale_sampling="per_term", restoration=False)
    )  # fmt: skip
    pairs = iter([(16, 4), (16, 8), (16, 8), (8, 4), (2, 4), (8, 4), (1, 2)])  # gg, then t0-t5
    monkeypatch.setattr(model, "_draw_scale_index", lambda: 0)
    monkeypatch.setattr(model, "_draw_pair", lambda i: next(pairs))
    finest = []
    model.net.register_forward_pre_hook(
        lambda m, args, kwargs: finest.append(kwargs.get("finest_rate")), with_kwargs=True
    )
    torch.manual_seed(0)
    model(batch(n_locals=3))
    assert finest == [8, 1, 2]


def test_the_reported_scale_is_view_ones_rate(monkeypatch):
    model = tiny(comparison_mode="crossed", scales=3)
    monkeypatch.setattr(model, "_draw_pair", lambda i: (4, 2))  # view 1 at rate 4, view 2 at 2
    torch.manual_seed(0)
    assert int(model(batch())["scale"]) == 4
    rest_only = tiny(comparison=False, scales=3)
    monkeypatch.setattr(rest_only, "_draw_scale_index", lambda: 1)
    data = {k: v for k, v in batch().items() if k != "locals"}
    assert int(rest_only(data)["scale"]) == 2  # no comparison: the restored rate
