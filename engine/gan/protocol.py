"""The generator protocol: what the reconstruction needs from any 2-D image GAN.

The pipeline only talks to this interface, so a rosinality StyleGAN2 checkpoint, the compact
default model and a plain z→image network (via `ZSpaceGenerator`) are interchangeable.
See docs/generator-protocol.md.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import torch
from torch import nn

from ..errors import EngineError
from .checkpoint import load_checkpoint
from .stylegan2 import Discriminator, Generator, NoiseSpec


@runtime_checkable
class GeneratorProtocol(Protocol):
    """A frozen image generator. Latents are B×latent_dim (or B×n_latent×latent_dim for W+)."""

    latent_kind: Literal["w", "z"]
    latent_dim: int
    image_size: int
    n_latent: int
    n_mapping_layers: int  # linear layers of the mapping network (the "8" of spec §5.4); 0 = none
    has_discriminator: bool

    def mean_latent(self, n: int = 4096, generator: torch.Generator | None = None) -> torch.Tensor: ...

    def sample_latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor: ...

    def synthesize(self, latent: torch.Tensor) -> torch.Tensor: ...

    def mapping(self, z: torch.Tensor) -> torch.Tensor: ...

    def partial_mapping(self, x: torch.Tensor, skip: int = 0, depth: int | None = None) -> torch.Tensor: ...

    def discriminator_features(self, images: torch.Tensor) -> list[torch.Tensor]: ...


class StyleGAN2Generator(nn.Module):
    """GeneratorProtocol for a StyleGAN2 (W-space latents, stored noise by default, frozen)."""

    latent_kind: Literal["w", "z"] = "w"

    def __init__(self, generator: Generator, discriminator: Discriminator | None = None,
                 noise: NoiseSpec = "stored"):
        super().__init__()
        self.generator = generator.eval().requires_grad_(False)
        self.discriminator = None if discriminator is None else discriminator.eval().requires_grad_(False)
        self.noise = noise
        self.latent_dim = generator.arch.style_dim
        self.image_size = generator.arch.size
        self.n_latent = generator.arch.n_latent
        self.n_mapping_layers = generator.arch.n_mlp
        self.has_discriminator = discriminator is not None

    def train(self, mode: bool = True) -> StyleGAN2Generator:
        """Always stays in eval mode: the reconstruction never trains the GAN."""
        return super().train(False)

    def mean_latent(self, n: int = 4096, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.generator.mean_latent(n, generator)

    @torch.no_grad()
    def sample_latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n untruncated w vectors: mapping of z ~ N(0, I) drawn from `generator` (on its device)."""
        return self.generator.sample_w(n, generator)

    def synthesize(self, latent: torch.Tensor) -> torch.Tensor:
        """W or W+ → B×3×size×size, not clamped (the official code clamps afterwards)."""
        return self.generator.synthesis(latent, self.noise)

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator.mapping(z)

    def partial_mapping(self, x: torch.Tensor, skip: int = 0, depth: int | None = None) -> torch.Tensor:
        return self.generator.partial_mapping(x, skip, depth)

    def discriminator_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        if self.discriminator is None:
            raise EngineError("this generator has no discriminator (the checkpoint holds no 'd')")
        return self.discriminator.features(images)


class ZSpaceGenerator(nn.Module):
    """GeneratorProtocol adapter for a plain z→image module (e.g. a DCGAN generator).

    There is no mapping network: `mapping` and `partial_mapping` are the identity, so a latent
    offset is added directly in z; the mean latent is 0. `latent_shape` reshapes B×dim latents
    for modules that want e.g. B×dim×1×1. `features` optionally supplies discriminator features.
    """

    latent_kind: Literal["w", "z"] = "z"
    n_latent = 1
    n_mapping_layers = 0

    def __init__(self, module: nn.Module, latent_dim: int, image_size: int,
                 latent_shape: tuple[int, ...] | None = None,
                 features: Callable[[torch.Tensor], list[torch.Tensor]] | None = None):
        super().__init__()
        self.module = module.eval().requires_grad_(False)
        self.latent_dim = latent_dim
        self.image_size = image_size
        self.latent_shape = latent_shape or (latent_dim,)
        self.features = features
        self.has_discriminator = features is not None

    def train(self, mode: bool = True) -> ZSpaceGenerator:
        return super().train(False)

    def _device(self) -> torch.device:
        tensor = next(self.module.parameters(), None)
        return tensor.device if tensor is not None else torch.device("cpu")

    def mean_latent(self, n: int = 4096, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.zeros(1, self.latent_dim, device=self._device())

    def sample_latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        z = torch.randn(n, self.latent_dim, generator=generator,
                        device=generator.device if generator is not None else self._device())
        return z.to(self._device())

    def synthesize(self, latent: torch.Tensor) -> torch.Tensor:
        if latent.ndim == 3:
            if latent.shape[1] != 1:
                raise EngineError(f"a z-space generator takes one latent per image, got {tuple(latent.shape)}")
            latent = latent[:, 0]
        return self.module(latent.reshape(latent.shape[0], *self.latent_shape))

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        return z

    def partial_mapping(self, x: torch.Tensor, skip: int = 0, depth: int | None = None) -> torch.Tensor:
        return x

    def discriminator_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        if self.features is None:
            raise EngineError("this generator has no discriminator features")
        return self.features(images)


def load_generator(path: str | Path, device: torch.device | str = "cpu", size: int | None = None,
                   channel_multiplier: int | None = None, discriminator: bool = True) -> StyleGAN2Generator:
    """A StyleGAN2 checkpoint file → a frozen StyleGAN2Generator (with D features if the file has 'd')."""
    ckpt = load_checkpoint(path, device, size, channel_multiplier, discriminator)
    return StyleGAN2Generator(ckpt.generator, ckpt.discriminator)
