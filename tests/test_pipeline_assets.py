"""Shared tiny assets for the pipeline tests (no tests here): a random-weight compact StyleGAN2
checkpoint with its discriminator, one of its samples as the input photo (RGBA: the alpha channel
is the object mask), the sample's latent, and a run configuration at the smallest sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.config import load_config
from engine.gan.checkpoint import save_checkpoint
from engine.gan.protocol import StyleGAN2Generator
from engine.gan.stylegan2 import Discriminator, Generator, StyleGAN2Arch

TINY_ARCH = StyleGAN2Arch(64, style_dim=32, n_mlp=4, channel_max=16)
# One iteration per step, batch 2, no previews: every code path, as fast as it gets.
TINY_SET = ["stage_len_dict=[1, 1, 1]", "collect_iters=2", "batchsize=2", "prior_fit_iters=1",
            "save_results=false", "net_width=0.125"]


def tiny_generator(seed: int = 0) -> StyleGAN2Generator:
    torch.manual_seed(seed)
    return StyleGAN2Generator(Generator(TINY_ARCH), Discriminator(TINY_ARCH))


def tiny_config(*extra: str):
    return load_config("fast", overrides=[*TINY_SET, *extra])


def object_mask(size: int = 64) -> np.ndarray:
    """A centred disc, 0/1, as the object mask of the test photo."""
    yy, xx = np.mgrid[:size, :size]
    return ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 <= (0.35 * size) ** 2).astype(np.float32)


@pytest.fixture(scope="session")
def tiny_assets(tmp_path_factory) -> dict[str, Path]:
    """{'gen': checkpoint, 'image': RGBA photo, 'latent': .pt} in a session temp dir."""
    root = tmp_path_factory.mktemp("pipeline_assets")
    gen = tiny_generator()
    save_checkpoint(root / "gen.pt", gen.generator, gen.discriminator)
    latent = gen.sample_latents(1, torch.Generator().manual_seed(1))
    torch.save(latent, root / "latent.pt")
    with torch.no_grad():
        image = gen.synthesize(latent).clamp(-1, 1)[0].permute(1, 2, 0).numpy() / 2 + 0.5
    rgba = np.concatenate([image, object_mask()[..., None]], axis=2)
    Image.fromarray((rgba * 255 + 0.5).astype(np.uint8), "RGBA").save(root / "photo.png")
    return {"gen": root / "gen.pt", "image": root / "photo.png", "latent": root / "latent.pt", "root": root}
