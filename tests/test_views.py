from dataclasses import replace

import numpy as np
import pytest
import torch

from pcrl_lib.views import (
    Box,
    CropSizes,
    ViewConfig,
    crop_resize,
    enclosing_box,
    iou,
    paper_view_config,
    sample_boxes,
)

PAPER_GLOBALS = {(64, 64, 32), (96, 96, 64), (96, 96, 96), (112, 112, 64)}
PAPER_LOCALS = {(8, 8, 8), (16, 16, 16), (32, 32, 16), (32, 32, 32)}


def test_box_geometry_hand_values():
    a, b = Box((0, 0), (4, 4)), Box((2, 2), (4, 4))
    assert iou(a, b) == pytest.approx(4 / 28)
    assert iou(a, a) == 1.0
    assert iou(a, Box((10, 10), (2, 2))) == 0.0
    assert enclosing_box(a, b) == Box((0, 0), (6, 6))
    assert Box((0, 0), (6, 6)).contains(b) and not b.contains(a)


def test_sub_crop_properties_over_many_seeds():
    cfg = paper_view_config(3, background_value=None)
    shape = (180, 170, 140)
    for seed in range(150):
        vb = sample_boxes(shape, cfg, np.random.default_rng(seed))
        assert iou(vb.global1, vb.global2) >= 0.3
        assert vb.box == enclosing_box(vb.global1, vb.global2)
        assert len(vb.locals) == 6
        assert all(vb.box.contains(loc) for loc in vb.locals)
        assert {vb.global1.size, vb.global2.size} <= PAPER_GLOBALS
        assert all(loc.size in PAPER_LOCALS for loc in vb.locals)
        for g in (vb.global1, vb.global2):
            assert all(s >= 0 and e <= n for s, e, n in zip(g.start, g.stop, shape, strict=True))


def test_sub_crop_2d_properties():
    cfg = paper_view_config(2)
    for seed in range(100):
        vb = sample_boxes((256, 256), cfg, np.random.default_rng(seed))
        assert iou(vb.global1, vb.global2) >= 0.3
        assert all(vb.box.contains(loc) for loc in vb.locals)
        area = vb.global1.volume / 256**2
        assert 0.3 * 0.9 <= area <= 1.0  # rounding of the sides


def test_multi_crop_and_none():
    multi = sample_boxes(
        (200, 200, 150),
        paper_view_config(3, "multi", background_value=None),
        np.random.default_rng(0),
    )
    assert multi.box is None and len(multi.locals) == 6
    none = sample_boxes(
        (200, 200, 150),
        paper_view_config(3, "none", background_value=None),
        np.random.default_rng(0),
    )
    assert none.box is None and none.locals == ()


def test_same_seed_same_boxes():
    cfg = paper_view_config(3, background_value=None)
    a = sample_boxes((150, 150, 120), cfg, np.random.default_rng(7))
    b = sample_boxes((150, 150, 120), cfg, np.random.default_rng(7))
    assert a == b


def test_background_filter_keeps_crops_in_the_body():
    image = np.full((200, 200, 100), -1000.0, dtype=np.float32)
    image[100:, :, :] = 40.0  # only the second half is tissue
    cfg = paper_view_config(3)
    for seed in range(30):
        vb = sample_boxes(image.shape, cfg, np.random.default_rng(seed), image=image)
        for g in (vb.global1, vb.global2):
            crop = image[g.slices]
            assert (crop < -150).mean() <= 0.85


def test_background_only_image_is_an_error():
    image = np.full((130, 130, 100), -1000.0, dtype=np.float32)
    with pytest.raises(ValueError, match="at most 85% of voxels below -150"):
        sample_boxes(
            image.shape, paper_view_config(3, max_tries=5), np.random.default_rng(0), image
        )


def test_official_filter_keeps_the_air_and_lung_crops_the_default_rejects():
    """The released luna_preprocess.py's rule is the complement of this project's: same
    constants (-150 HU, 15 %), the other side kept."""
    image = np.full((200, 200, 100), -1000.0, dtype=np.float32)
    image[100:, :, :] = 40.0
    cfg = paper_view_config(3, preset="official")
    assert cfg.background_keep == "air" and cfg.local_placement == "official"
    for seed in range(30):
        vb = sample_boxes(image.shape, cfg, np.random.default_rng(seed), image=image)
        for g in (vb.global1, vb.global2):
            assert (image[g.slices] >= -150).mean() <= 0.15
    tissue = np.full((130, 130, 100), 40.0, dtype=np.float32)
    with pytest.raises(ValueError, match="at most 15% of voxels at or above -150"):
        sample_boxes(tissue.shape, replace(cfg, max_tries=5), np.random.default_rng(0), tissue)


def test_official_local_placement_ranges_past_the_box_but_stays_in_the_image():
    shape = (150, 150, 120)
    inside = paper_view_config(3, background_value=None)
    official = paper_view_config(3, preset="official", background_value=None)
    past = 0
    for seed in range(40):
        vb = sample_boxes(shape, official, np.random.default_rng(seed))
        for loc in vb.locals:
            assert all(
                a >= 0 and b <= n for a, b, n in zip(loc.start, loc.stop, shape, strict=True)
            )
            # the corner lies in the enclosing box widened by 3 voxels
            assert all(
                a - 3 <= s < b + 3
                for s, a, b in zip(loc.start, vb.box.start, vb.box.stop, strict=True)
            )
            past += not vb.box.contains(loc)
        ref = sample_boxes(shape, inside, np.random.default_rng(seed))
        assert all(ref.box.contains(loc) for loc in ref.locals)
    assert past > 0


def test_crop_larger_than_image_is_an_error():
    with pytest.raises(ValueError, match="does not fit"):
        sample_boxes(
            (50, 50, 20), paper_view_config(3, background_value=None), np.random.default_rng(0)
        )


def test_bad_configs_are_rejected():
    with pytest.raises(ValueError, match="mode"):
        ViewConfig(mode="tiles")
    with pytest.raises(ValueError, match="exactly one"):
        CropSizes()
    with pytest.raises(ValueError, match="scale"):
        CropSizes(scale=(0.5, 0.2))


def test_crop_resize_values_and_shape():
    image = np.arange(2 * 8 * 8, dtype=np.float32).reshape(2, 8, 8)
    out = crop_resize(image, Box((2, 4), (4, 4)), (4, 4))
    assert torch.equal(out, torch.from_numpy(image[:, 2:6, 4:8]))
    half = crop_resize(image, Box((0, 0), (8, 8)), (4, 4))
    assert half.shape == (2, 4, 4)
    assert half[0, 0, 0].item() == pytest.approx(image[0, :2, :2].mean())


def test_crop_resize_returns_float32_also_for_a_crop_of_the_output_size():
    image = np.arange(2 * 4 * 6, dtype=np.int16).reshape(2, 4, 6)
    out = crop_resize(image, Box((0, 0), (4, 6)), (4, 6))
    assert out.dtype == torch.float32 and torch.equal(out, torch.from_numpy(image).float())
    out[0, 0, 0] = -1  # a copy: the image is untouched
    assert image[0, 0, 0] == 0


def test_crop_resize_3d_is_trilinear_without_corner_alignment():
    # a ramp along x of values 0..3 (voxel centres); halving with align_corners=False
    # averages pairs: centres at 0.5 and 2.5
    ramp = torch.arange(4.0).view(1, 4, 1, 1).expand(1, 4, 2, 2).contiguous()
    out = crop_resize(ramp, Box((0, 0, 0), (4, 2, 2)), (2, 2, 2))
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([0.5, 2.5]))


def test_crop_resize_names_the_expected_dims():
    with pytest.raises(
        ValueError, match=r"^crop_resize expects \(C, \*S\) with 3 spatial dims, got \(4, 6\)$"
    ):
        crop_resize(np.zeros((4, 6)), Box((0, 0), (4, 6)), (2, 2, 2))


def test_box_contains_refuses_boxes_of_other_dimensions():
    assert Box((0, 0), (4, 4)).contains(Box((1, 1), (2, 2)))
    with pytest.raises(ValueError):
        Box((0, 0), (4, 4)).contains(Box((0, 0, 0), (1, 1, 1)))


def test_official_local_corner_stays_in_its_window():
    from pcrl_lib.views import _official_local

    rng = np.random.default_rng(0)
    # a window of width one gives its only corner; an empty window gives its start
    assert _official_local((10,), (2,), (3,), (4,), rng).start == (3,)
    assert _official_local((10,), (2,), (3,), (3,), rng).start == (3,)
    # a window reaching past the image is shifted back inside: corner <= n - size
    assert _official_local((10,), (4,), (8,), (9,), rng).start == (6,)


def _rng(seed=0):
    return np.random.default_rng(seed)


def test_crop_sizes_validation_messages_and_bounds():
    with pytest.raises(ValueError, match=r"^CropSizes: give exactly one of sizes or scale$"):
        CropSizes()
    for bad in ((0.0, 0.5), (0.5, 1.5), (0.6, 0.5)):
        with pytest.raises(ValueError, match=r"^CropSizes: scale must satisfy 0 < lo <= hi <= 1"):
            CropSizes(scale=bad)
    assert CropSizes(scale=(0.5, 0.5)).scale == (0.5, 0.5) and CropSizes(scale=(1.0, 1.0))


def test_crop_sizes_by_scale_hand_values():
    # 2D: area x scale, aspect ratio r: (sqrt(t r), sqrt(t / r))
    assert CropSizes(scale=(0.25, 0.25), ratio=(1, 1)).sample((100, 100), _rng()) == (50, 50)
    assert CropSizes(scale=(0.5, 0.5), ratio=(2, 2)).sample((10, 10), _rng()) == (10, 5)
    # 3D: every side scaled by scale ** (1/3): 0.125 -> halves
    assert CropSizes(scale=(0.125, 0.125)).sample((40, 40, 20), _rng()) == (20, 20, 10)
    # one voxel is a crop; zero voxels is not: after 10 tries the whole image
    assert CropSizes(scale=(0.25, 0.25), ratio=(1, 1)).sample((2, 2), _rng()) == (1, 1)
    assert CropSizes(scale=(0.001, 0.001), ratio=(1, 1)).sample((4, 4), _rng()) == (4, 4)


def test_crop_sizes_aspect_ratio_is_log_uniform_over_its_range():
    sizes = CropSizes(scale=(0.2, 0.2), ratio=(0.5, 2.0))
    rng = _rng(1)
    ratios = [h / w for h, w in (sizes.sample((200, 200), rng) for _ in range(200))]
    assert min(ratios) < 0.6 and max(ratios) > 1.7  # both ends of [0.5, 2]
    assert 0.4 < np.mean(np.log(ratios) < 0) < 0.6  # log-uniform: half below 1
    assert all(
        abs(h * w - 8000) < 300 for h, w in (sizes.sample((200, 200), rng) for _ in range(20))
    )


@pytest.mark.parametrize(
    "call",
    [
        lambda a, b: enclosing_box(a, b),
        lambda a, b: iou(a, b),
        lambda a, b: a.contains(b),
    ],
    ids=["enclosing_box", "iou", "contains"],
)
def test_box_functions_refuse_boxes_of_different_dimensions(call):
    with pytest.raises(ValueError):
        call(Box((0, 0), (4, 4)), Box((0, 0, 0), (2, 2, 2)))


def _summary(vb):
    box = vb.box and (vb.box.start, vb.box.size)
    locals_ = tuple((b.start, b.size) for b in vb.locals)
    return (vb.global1.start, vb.global1.size, vb.global2.start, vb.global2.size, box, locals_)


def test_sample_boxes_draws_are_pinned():
    """The committed studies' views depend on these exact draws (seed 3): a change of the
    placement arithmetic (centring, clipping, margins) shows up here."""
    shape = (160, 160, 128)
    tissue = np.full((1, *shape), -500.0)
    tissue[:, 40:120, 40:120] = 40
    air = np.full((1, *shape), -500.0)
    air[:, :16] = 40
    cases = {
        ("paper", "sub", 0): (
            (4, 8, 15), (112, 112, 64), (4, 29, 13), (96, 96, 64), ((4, 8, 13), (112, 117, 66)),
            (((19, 78, 50), (16, 16, 16)), ((15, 57, 36), (8, 8, 8))),
        ),
        ("official", "sub", 1): (
            (4, 8, 15), (112, 112, 64), (4, 29, 13), (96, 96, 64), ((4, 8, 13), (112, 117, 66)),
            (((19, 90, 62), (16, 16, 16)), ((14, 60, 38), (8, 8, 8))),
        ),
        ("paper", "multi", 0): (
            (4, 8, 15), (112, 112, 64), (77, 84, 56), (64, 64, 32), None,
            (((14, 50, 52), (8, 8, 8)), ((61, 34, 18), (32, 32, 16))),
        ),
    }  # fmt: skip
    for (preset, mode, image), expected in cases.items():
        cfg = paper_view_config(3, mode, preset, n_locals=2)
        got = sample_boxes(shape, cfg, _rng(3), (tissue, air)[image])
        assert _summary(got) == expected, (preset, mode)
    got = sample_boxes((256, 256), paper_view_config(2, "sub", n_locals=2), _rng(3))
    assert _summary(got) == (
        (20, 72), (142, 166), (0, 14), (192, 242), ((0, 14), (192, 242)),
        (((77, 120), (81, 98)), ((118, 107), (59, 62))),
    )  # fmt: skip


def test_paper_view_config_2d_settings_and_overrides():
    cfg = paper_view_config(2, "multi", n_locals=3)
    assert (cfg.mode, cfg.n_locals, cfg.background_value) == ("multi", 3, None)
    assert (cfg.global_out, cfg.local_out) == ((224, 224), (96, 96))
    assert (cfg.global_sizes.scale, cfg.local_sizes.scale) == ((0.3, 1.0), (0.05, 0.3))


def test_view_errors_name_the_problem():
    with pytest.raises(
        ValueError, match=r"^preset must be one of \('paper', 'official'\), got 'x'$"
    ):
        paper_view_config(3, preset="x")
    with pytest.raises(ValueError, match=r"^spatial_dims must be 2 or 3, got 4$"):
        paper_view_config(4)
    with pytest.raises(ValueError, match=r"^image has 2 spatial dims, views are 3D$"):
        sample_boxes((64, 64), paper_view_config(3), _rng())
    blank = np.full((1, 160, 160, 128), -1000.0)
    with pytest.raises(
        ValueError,
        match=r"no global crop with .* in 100 tries: the image does not have enough of what the crop filter keeps$",
    ):
        sample_boxes(blank.shape[1:], paper_view_config(3), _rng(), blank)
    far = replace(paper_view_config(3), min_iou=0.99, max_tries=5)
    with pytest.raises(
        ValueError,
        match=r"^no pair of global crops with IoU >= 0.99 in 5 tries \(image shape \(160, 160, 128\)\); lower min_iou or use closer crop sizes$",
    ):
        sample_boxes((160, 160, 128), far, _rng())


def test_crop_filter_rules_hand_values():
    from pcrl_lib.views import _is_background, _max_iou

    cfg = paper_view_config(3)  # tissue: redraw when > 85 % below -150
    box = Box((0, 0, 0), (4, 4, 4))  # read every second voxel: 2 x 2 x 2 = 8 samples
    at = np.full((1, 4, 4, 4), cfg.background_value)
    assert not _is_background(at, box, cfg)  # at the value is not below it
    grid = np.full((1, 4, 4, 4), 40.0)
    grid[:, ::2, ::2, ::2] = -1000  # exactly the voxels read: all below
    assert _is_background(grid, box, cfg)
    seven = np.full((1, 4, 4, 4), 40.0)
    seven[:, ::2, ::2, ::2] = -1000
    seven[:, 0, 0, 0] = 40  # 7 of 8 read voxels below: 0.875 > 0.85
    assert _is_background(seven, box, cfg)
    exact = np.full((1, 20, 2, 2), -1000.0)  # 10 x 1 x 1 voxels read
    exact[:, [0, 2, 4]] = 40  # 3 of 10 read voxels above: 0.7 below, not more than 0.7
    assert not _is_background(
        exact, Box((0, 0, 0), (20, 2, 2)), replace(cfg, background_fraction=0.7)
    )
    assert not _is_background(grid, box, replace(cfg, background_value=None))
    # the largest IoU of sizes (4, 4) and (2, 2): 4 / (16 + 4 - 4)
    assert _max_iou((4, 4), (2, 2)) == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"background_keep": "lung"}, "background_keep must be 'tissue' or 'air', got 'lung'"),
        ({"local_placement": "x"}, "local_placement must be 'inside' or 'official', got 'x'"),
        ({"local_out": (8, 8)}, "global_out and local_out need the same dimensionality"),
        ({"min_iou": 1.0}, "min_iou must be in [0, 1), got 1.0"),
        ({"min_iou": -0.1}, "min_iou must be in [0, 1), got -0.1"),
        ({"n_locals": -1}, "n_locals must be >= 0, got -1"),
    ],
)
def test_view_config_refuses_each_bad_field_by_name(changes, message):
    import re

    with pytest.raises(ValueError, match="^" + re.escape(f"ViewConfig: {message}") + "$"):
        replace(paper_view_config(3), **changes)


def test_view_config_accepts_the_bounds():
    assert replace(paper_view_config(3), min_iou=0.0, n_locals=0).n_locals == 0


def test_an_odd_second_crop_is_centred_on_a_voxel_of_the_first():
    """Sub-crop draws the second global's centre voxel inside the first (Sec. 3.4): for an
    odd size ``s`` the centre is ``start + s // 2``, so it must stay inside ``global1``
    whenever the crop was not clipped at the image's border."""
    cfg = paper_view_config(2, "sub", n_locals=1)
    cfg = replace(cfg, global_sizes=CropSizes(sizes=((9, 9), (7, 11))), min_iou=0.05)
    checked = 0
    for seed in range(300):
        vb = sample_boxes((128, 128), cfg, _rng(seed))
        g1, g2 = vb.global1, vb.global2
        for a, b, start, s in zip(g1.start, g1.stop, g2.start, g2.size, strict=True):
            if 0 < start < 128 - s:  # not clipped
                assert a <= start + s // 2 < b, (seed, g1, g2)
                checked += start + s // 2 == a  # the edge case a centring off by one fails
    assert checked >= 5
