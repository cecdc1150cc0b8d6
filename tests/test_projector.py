"""The built-in W-space projector on a tiny random-weight generator's own samples."""

import pytest
import torch
from torch import nn

from engine.config import ProjectorConfig
from engine.gan import Generator, StyleGAN2Arch, StyleGAN2Generator, ZSpaceGenerator
from engine.losses import build_perceptual
from engine.projector import _learning_rate, project


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    g = StyleGAN2Generator(Generator(StyleGAN2Arch(size=32, style_dim=32, n_mlp=3, channel_multiplier=1,
                                                   channel_max=32)))
    w_true = g.sample_latents(1, torch.Generator().manual_seed(5))
    with torch.no_grad():
        target = g.synthesize(w_true).clamp(-1, 1)
    return g, w_true, target


def test_projection_reduces_reconstruction_error(tiny):
    g, w_true, target = tiny
    steps = []
    result = project(g, target, ProjectorConfig(iters=40, mean_samples=256), progress=lambda i, n, l: steps.append(i))
    assert steps == list(range(1, 41))
    assert result.latent.shape == (1, 32) and result.image.shape == (1, 3, 32, 32)
    assert result.l1_end < 0.3 * result.l1_start
    start = g.mean_latent(256, torch.Generator().manual_seed(0))
    assert (result.latent - w_true).norm() < 0.7 * (start - w_true).norm()  # moved towards the true latent
    with torch.no_grad():  # the returned image is the generator's image of the returned latent
        assert torch.allclose(result.image, g.synthesize(result.latent).clamp(-1, 1), atol=1e-5)


def test_projection_with_perceptual_loss_and_mask(tiny):
    g, _, target = tiny
    perceptual = build_perceptual("mobilenet-v2")
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    cfg = ProjectorConfig(iters=25, mean_samples=256, use_mask=True, lam_perc=0.5)
    result = project(g, target, cfg, perceptual=perceptual, mask=mask)
    assert result.l1_end < 0.5 * result.l1_start  # masked L1 (inside the square)
    assert result.losses[-1] < result.losses[0]


def test_crop_chain_is_applied_to_the_generator_image(tiny):
    g, _, target = tiny
    small = torch.nn.functional.interpolate(target[..., 8:24, 8:24], size=(16, 16), mode="area")
    result = project(g, small, ProjectorConfig(iters=0, mean_samples=64), crop=16, reference=32)
    assert result.image.shape == (1, 3, 16, 16) and result.losses == []


def test_z_space_generator_starts_at_zero():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(8, 3 * 8 * 8), nn.Tanh(), nn.Unflatten(1, (3, 8, 8)))
    g = ZSpaceGenerator(module, latent_dim=8, image_size=8)
    with torch.no_grad():
        target = module(torch.randn(1, 8))
    result = project(g, target, ProjectorConfig(iters=30, lr=0.05, noise_strength=0.0))
    assert result.l1_end < result.l1_start


def test_learning_rate_schedule():
    assert _learning_rate(0.0, 0.1, 0.05, 0.25) == 0.0
    assert _learning_rate(0.5, 0.1, 0.05, 0.25) == pytest.approx(0.1)
    assert 0 < _learning_rate(0.9, 0.1, 0.05, 0.25) < 0.1


def test_start_candidates_begin_at_the_best_sampled_latent(tiny):
    g, _, target = tiny
    result = project(g, target, ProjectorConfig(iters=0, mean_samples=256, start_candidates=200, lam_perc=0.0))
    from_mean = project(g, target, ProjectorConfig(iters=0, mean_samples=256))
    assert result.l1_start == result.l1_end < 0.9 * from_mean.l1_end  # the chosen start beats the mean latent
