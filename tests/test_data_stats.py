"""The default model's view/light distributions, estimated from the synthetic renders' ground truth."""

import math

import torch

from engine.config import load_config
from engine.data.shards import generate
from engine.data.stats import write
from engine.data.synth import SynthConfig
from engine.nets import load_mvn, resolve_mvn


def test_estimated_mvn_matches_the_sampling_ranges(tmp_path):
    cfg = SynthConfig()
    generate(tmp_path / "data", 300, seed=3, cfg=cfg, shard_size=300)
    write(tmp_path / "data", tmp_path)
    view, light = load_mvn(tmp_path / "view_mvn.pth", 6), load_mvn(tmp_path / "light_mvn.pth", 4)
    uniform_std = 1 / math.sqrt(3)  # std of U(-1, 1)
    std = view.cov.diagonal().sqrt()
    assert abs(std[1] - cfg.yaw_deg / 60 * uniform_std) < 0.05  # yaw in units of 60°
    assert abs(std[0] - cfg.pitch_deg / 60 * uniform_std) < 0.02
    assert std[5] < 1e-3  # z translation is not modelled
    assert abs(light.mean[0] - (2 * sum(cfg.ambient) / 2 - 1)) < 0.05  # l0 = 2·k_a − 1
    assert abs(light.mean[1] - (2 * sum(cfg.diffuse) / 2 - 1)) < 0.05
    view.distribution().sample((4,))  # a usable (positive-definite) distribution


def test_default_preset_uses_the_shipped_distributions():
    cfg = load_config("default")
    for kind, name in (("view", cfg.view_mvn_path), ("light", cfg.light_mvn_path)):
        mvn = resolve_mvn(name, kind)
        assert mvn.source.endswith(f"default/{kind}_mvn.pth")
        assert torch.isfinite(mvn.cov).all()
