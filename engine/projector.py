"""Built-in GAN inversion: find a W-space latent whose image matches the input (spec §8).

The official code needs an external projector (rosinality projector.py in W mode, issues #6/#30/#48);
this one follows the same recipe on the generator protocol: start from the mean latent (or, with
`start_candidates`, from the best of that many sampled latents), optimise one
w with Adam under a warm-up / cosine cool-down learning rate, with decaying exploration noise on w,
minimising λ_l1·L1 + λ_perc·perceptual between the generator's image (brought to the model size with
the official GAN-image chain) and the input.

Noise maps are deliberately NOT optimised (rosinality does): GAN2Shape always renders with the
checkpoint's fixed noise buffers, so a w fitted together with other noise maps would not reproduce
the image (issue #26). "Noise" here is the exploration noise on w (ProjectorConfig.noise_strength).

Public API:

    Projection(latent 1×dim, image 1×3×S×S in [−1, 1], losses list[float], l1_start, l1_end)
    project(generator, target, cfg, perceptual=None, mask=None, crop=None, reference=None,
            progress=None, seed=0) -> Projection
        generator: GeneratorProtocol; target: 1×3×S×S in [−1, 1] (model size); cfg: ProjectorConfig;
        perceptual: a PerceptualLoss (engine.losses) or None (then λ_perc is ignored); mask: 1×1×S×S
        used when cfg.use_mask; crop/reference: the preset's crop chain (Config.crop,
        crop_reference_size); progress(i, total, loss) after every iteration.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .config import ProjectorConfig
from .inputs import gan_to_model
from .losses import photometric_l1


@dataclass
class Projection:
    latent: torch.Tensor  # 1×latent_dim (W space for StyleGAN2, z for z-space generators)
    image: torch.Tensor  # 1×3×S×S, clamped, at the model size
    losses: list[float]  # total loss per iteration
    l1_start: float  # L1 of the starting latent's image against the target
    l1_end: float  # L1 of the returned latent's image


def _learning_rate(t: float, base: float, rampup: float, rampdown: float) -> float:
    """rosinality's schedule: linear warm-up over `rampup`, cosine cool-down over the last `rampdown`."""
    ramp = min(1.0, (1 - t) / rampdown) if rampdown > 0 else 1.0
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    if rampup > 0:
        ramp *= min(1.0, t / rampup)
    return base * ramp


def _start(generator: Any, n: int, seed: int) -> tuple[torch.Tensor, float]:
    """Mean latent and the latents' RMS spread (scales the exploration noise)."""
    if generator.latent_kind != "w":
        zero = generator.mean_latent(1)
        return zero.detach().clone(), 1.0
    rng = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w = generator.sample_latents(n, rng)
        mean = w.mean(0, keepdim=True)
        std = float(((w - mean).pow(2).sum() / n) ** 0.5)
    return mean, std


@torch.no_grad()
def _best_candidate(generator: Any, n: int, seed: int, losses_of: Callable[[torch.Tensor], torch.Tensor],
                    chunk: int = 64) -> torch.Tensor:
    """The lowest-loss latent of n sampled ones (drawn from their own seed, apart from the mean's)."""
    rng = torch.Generator().manual_seed(seed + 2)
    best, best_loss = None, float("inf")
    for start in range(0, n, chunk):
        w = generator.sample_latents(min(chunk, n - start), rng)
        loss = losses_of(w)
        i = int(loss.argmin())
        if float(loss[i]) < best_loss:
            best, best_loss = w[i:i + 1], float(loss[i])
    return best.detach().clone()


def project(generator: Any, target: torch.Tensor, cfg: ProjectorConfig, perceptual: torch.nn.Module | None = None,
            mask: torch.Tensor | None = None, crop: int | None = None, reference: int | None = None,
            progress: Callable[[int, int, float], None] | None = None, seed: int = 0) -> Projection:
    """Invert `target` into the generator's latent space (see module doc)."""
    size = target.shape[-1]
    m = mask if cfg.use_mask else None

    def render(latent: torch.Tensor) -> torch.Tensor:
        return gan_to_model(generator.synthesize(latent), size, crop, reference)

    def losses_of(img: torch.Tensor) -> torch.Tensor:
        """The loss of each image of a batch."""
        loss = cfg.lam_l1 * torch.stack([photometric_l1(one[None], target, m) for one in img])
        if perceptual is not None and cfg.lam_perc > 0:
            a, b = (img, target) if m is None else (img * m, target * m)
            loss = loss + cfg.lam_perc * perceptual(a, b)
        return loss

    def loss_of(img: torch.Tensor) -> torch.Tensor:
        return losses_of(img).mean()

    start, std = _start(generator, cfg.mean_samples, seed)
    if cfg.start_candidates > 0:
        start = _best_candidate(generator, cfg.start_candidates, seed, lambda w: losses_of(render(w)))
    start = start.to(target.device)
    with torch.no_grad():
        l1_start = photometric_l1(render(start), target, m).item()
    w = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=cfg.lr, betas=(0.9, 0.999))
    noise_rng = torch.Generator(device=target.device).manual_seed(seed + 1)
    history = []
    for i in range(cfg.iters):
        t = i / max(cfg.iters, 1)
        for group in opt.param_groups:
            group["lr"] = _learning_rate(t, cfg.lr, cfg.lr_rampup, cfg.lr_rampdown)
        strength = std * cfg.noise_strength * max(0.0, 1 - t / cfg.noise_ramp) ** 2 if cfg.noise_ramp > 0 else 0.0
        jitter = torch.randn(w.shape, generator=noise_rng, device=w.device) * strength
        loss = loss_of(render(w + jitter))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append(loss.item())
        if progress is not None:
            progress(i + 1, cfg.iters, history[-1])
    latent = w.detach()
    with torch.no_grad():
        image = render(latent)
        l1_end = photometric_l1(image, target, m).item()
    return Projection(latent, image, history, l1_start, l1_end)
