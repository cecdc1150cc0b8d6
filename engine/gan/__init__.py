"""StyleGAN2 (rosinality checkpoint layout) in pure PyTorch and the generator protocol.

Public API: see docs/generator-protocol.md.
"""

from .checkpoint import (
    StyleGAN2Checkpoint,
    describe_checkpoint,
    infer_arch,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from .protocol import GeneratorProtocol, StyleGAN2Generator, ZSpaceGenerator, load_generator
from .stylegan2 import Discriminator, Generator, StyleGAN2Arch

__all__ = [
    "Discriminator",
    "Generator",
    "GeneratorProtocol",
    "StyleGAN2Arch",
    "StyleGAN2Checkpoint",
    "StyleGAN2Generator",
    "ZSpaceGenerator",
    "describe_checkpoint",
    "infer_arch",
    "load_checkpoint",
    "load_generator",
    "read_checkpoint",
    "save_checkpoint",
]
