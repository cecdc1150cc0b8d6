"""Presets against the spec tables (§1.2, §1.6, §1.8, §12), overrides and their error messages."""

import pytest

from engine import weights
from engine.config import config_to_dict, crop_fraction, load_config, preset_names, schedule
from engine.errors import EngineError

# (num_stage, stage 0 lens, later lens, flip1, flip3, collect_iters, batchsize, total iters) from the spec
T, F = True, False
OFFICIAL = {
    "car": (4, (700, 700, 600), (200, 500, 400), [F] * 4, [F] * 4, 100, 8, 5300),
    "church": (4, (700, 700, 600), (200, 500, 400), [F] * 4, [F] * 4, 100, 8, 5300),
    "celeba": (4, (600, 600, 400), (200, 500, 300), [F] * 4, [T, F, F, F], 100, 16, 4600),
    "cat": (4, (600, 600, 400), (200, 500, 300), [F] * 4, [T, F, F, F], 100, 16, 4600),
    "synface": (1, (500, 500, 200), None, [F], [T], 100, 16, 1200),
    "celeba_pretrain": (4, (1500,) * 3, (700, 1000, 1000), [F, T, T, T], [T] * 4, 800, 8, 12600),
    "cat_pretrain": (4, (1500,) * 3, (700, 1000, 1000), [F, T, T, T], [T] * 4, 800, 8, 12600),
    "synface_pretrain": (8, (1500,) * 3, (700, 1000, 1000), [F] + [T] * 7, [T] * 8, 1000, 12, 23400),
}
# §12 per-preset keys: image_size, crop, relative_enc, use_mask, view_scale, F1_d, gan_size, cm, prior far
KEYS = {
    "car": (128, None, F, T, 1.0, 2, 512, 2, 1.02),
    "church": (128, None, F, T, 1.0, 2, 256, 2, 1.0),
    "celeba": (128, None, T, F, 1.2, 2, 128, 1, 1.02),
    "cat": (128, 170, T, F, 1.2, 2, 256, 1, 1.02),
    "synface": (64, 170, T, F, 1.2, 8, 128, 1, 1.02),
    "celeba_pretrain": (128, None, T, F, 1.2, 2, 128, 1, 1.02),
    "cat_pretrain": (128, 170, T, F, 1.2, 2, 256, 1, 1.02),
    "synface_pretrain": (64, 170, T, F, 1.2, 8, 128, 1, 1.02),
}


@pytest.mark.parametrize("name", list(OFFICIAL))
def test_official_schedule(name):
    num_stage, first, later, flip1, flip3, collect, batch, total = OFFICIAL[name]
    cfg = load_config(name)
    images = 200 if cfg.joint_train else 1
    phases = schedule(cfg, num_images=images)
    steps = [p for p in phases if p.step != "prior"]
    assert len(steps) == 4 * num_stage
    assert sum(p.iterations for p in steps if p.step.startswith("step")) == total
    for k in range(num_stage):
        s1, s2, col, s3 = steps[4 * k: 4 * k + 4]
        assert (s1.step, s2.step, col.step, s3.step) == ("step1", "step2", "collect", "step3")
        assert (s1.iterations, s2.iterations, s3.iterations) == (first if k == 0 else later)
        assert (s1.nets, s2.nets, col.nets) == (("netA",), ("netEnc",), ())
        assert set(s3.nets) == {"netD", "netA", "netV", "netL"}
        assert (s1.flip1, s3.flip1, s3.flip3) == (flip1[k], flip1[k], flip3[k])
        assert not (s2.flip1 or s2.flip3 or s1.flip3)
        bank = (collect // 200 if cfg.joint_train else collect) * batch
        assert col.iterations == collect and col.bank_size == s3.bank_size == bank
    # the ellipsoid fit exists exactly when there is no pretrained checkpoint (§1.5)
    prior = [p for p in phases if p.step == "prior"]
    assert bool(prior) == (cfg.pretrain is None)
    if prior:
        assert prior[0].iterations == 1000 and prior[0].nets == ("netD",)


def test_joint_bank_sizes_match_spec():
    assert schedule(load_config("celeba_pretrain"), 200)[-1].bank_size == 32
    assert schedule(load_config("synface_pretrain"), 200)[-1].bank_size == 60
    assert schedule(load_config("celeba"))[-1].bank_size == 1600
    assert schedule(load_config("car"))[-1].bank_size == 800


@pytest.mark.parametrize("name", list(KEYS))
def test_official_keys_and_weights_names(name):
    cfg = load_config(name)
    size, crop, rel, use_mask, view_scale, f1_d, gan_size, cm, far = KEYS[name]
    got = (cfg.image_size, cfg.crop, cfg.relative_enc, cfg.use_mask, cfg.view_scale, cfg.F1_d, cfg.gan_size,
           cfg.channel_multiplier, cfg.prior_far)
    assert got == (size, crop, rel, use_mask, view_scale, f1_d, gan_size, cm, far)
    assert cfg.net_width == 1.0 and cfg.lr == 1e-4 and cfg.lam_perc == 0.5 and cfg.prior_near == 0.91
    manifest = weights.manifest()
    for ref in (cfg.gan_ckpt, cfg.pretrain, cfg.view_mvn_path, cfg.light_mvn_path):
        assert ref is None or ref in manifest
    assert manifest[cfg.gan_ckpt].size == gan_size
    assert manifest[cfg.gan_ckpt].channel_multiplier == cm
    synface_light, default_light = (-0.9, 0.9, -0.3, 0.8, -0.1, 0.7, -0.4), (-1, 1, -0.2, 0.8, -0.1, 0.6, -0.6)
    assert cfg.rand_light == (synface_light if cfg.category == "synface" else default_light)
    assert (crop_fraction(cfg) is None) == (crop is None)


def test_default_and_fast_are_small():
    default, fast = load_config("default"), load_config("fast")
    assert default.image_size == fast.image_size == 64 and default.gan_ckpt == "default"
    official = sum(p.iterations for p in schedule(load_config("celeba")) if p.step.startswith("step"))
    mine = sum(p.iterations for p in schedule(default) if p.step.startswith("step"))
    assert mine < 0.1 * official
    assert sum(p.iterations for p in schedule(fast)) < 20
    assert set(preset_names()) >= {*OFFICIAL, "default", "fast"}


def test_toml_then_overrides(tmp_path):
    toml = tmp_path / "my.toml"
    toml.write_text('batchsize = 4\nflip3_cfg = [false, false]\n[projector]\niters = 7\n')
    cfg = load_config("default", toml, ["lr=0.5", "device=cpu", "projector.lam_perc=0", "crop=none", "batchsize=2"])
    assert (cfg.batchsize, cfg.flip3_cfg, cfg.projector.iters, cfg.lr, cfg.device) == (2, (False, False), 7, 0.5, "cpu")
    assert cfg.projector.lam_perc == 0.0 and isinstance(cfg.projector.lam_perc, float)
    again = load_config("celeba", overrides=config_to_dict(cfg))
    assert config_to_dict(again) == {**config_to_dict(cfg), "preset": "celeba"}


@pytest.mark.parametrize("override, message", [
    ("nosuchkey=1", "unknown config key 'nosuchkey'"),
    ("batchsize=1.5", "'batchsize' expects int"),
    ("lr=true", "'lr' expects float"),
    ("flip1_cfg=[false, true]", "flip1 without flip3"),
    ("image_size=100", "'image_size' must be 64, 128 or 256"),
    ("perceptual=vgg", "'perceptual' must be one of"),
    ("projector.nope=1", "unknown projector key 'nope'"),
    ("num_stage=3", "'flip1_cfg' needs one flag per stage"),
    ("stage_len_dict2=[0,10,75]", "'stage_len_dict2' needs at least one step-1 iteration"),
    ("just-a-word", "not of the form key=value"),
])
def test_bad_overrides_are_clear_errors(override, message):
    with pytest.raises(EngineError, match=message.replace("[", r"\[")):
        load_config("default", overrides=[override])


def test_unknown_preset_and_bad_toml(tmp_path):
    with pytest.raises(EngineError, match="unknown preset"):
        load_config("horse")
    bad = tmp_path / "bad.toml"
    bad.write_text("batchsize = [")
    with pytest.raises(EngineError, match="cannot read config file"):
        load_config("default", bad)


def test_projection_choice_is_checked_and_shapes_the_schedule():
    cfg = load_config("default", overrides=['projection="optimize"'])
    steps = [p.step for p in schedule(cfg)]
    assert "step2" not in steps and steps.count("collect") == cfg.num_stage
    assert "step2" in [p.step for p in schedule(load_config("default", overrides=['projection="encoder"']))]
    with pytest.raises(EngineError, match="projection"):
        load_config("default", overrides=['projection="nope"'])
