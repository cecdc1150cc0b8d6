"""State-dict names and shapes equal the rosinality tables of spec §9.2 / §9.5 (built on the meta
device: no weights are allocated and no forward pass is computed for the big sizes)."""

from __future__ import annotations

import math

import pytest
import torch

from engine.gan import Discriminator, Generator, StyleGAN2Arch

SPEC_CHANNELS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}


def spec_channels(res: int, cm: int) -> int:
    return SPEC_CHANNELS[res] * (cm if res >= 64 else 1)


def spec_generator_shapes(size: int, cm: int) -> dict[str, tuple[int, ...]]:
    """The generator table of spec §9.2, written out from its naming pattern."""
    log_size = int(math.log2(size))
    shapes: dict[str, tuple[int, ...]] = {}
    for i in range(1, 9):
        shapes[f"style.{i}.weight"] = (512, 512)
        shapes[f"style.{i}.bias"] = (512,)

    def styled(prefix: str, c_in: int, c_out: int, k: int) -> None:
        shapes[f"{prefix}.conv.weight"] = (1, c_out, c_in, k, k)
        shapes[f"{prefix}.conv.modulation.weight"] = (c_in, 512)
        shapes[f"{prefix}.conv.modulation.bias"] = (c_in,)

    shapes["input.input"] = (1, 512, 4, 4)
    styled("conv1", 512, 512, 3)
    shapes["conv1.noise.weight"] = (1,)
    shapes["conv1.activate.bias"] = (512,)
    styled("to_rgb1", 512, 3, 1)
    shapes["to_rgb1.bias"] = (1, 3, 1, 1)
    for k in range(log_size - 2):
        c_in, c_out = spec_channels(2 ** (k + 2), cm), spec_channels(2 ** (k + 3), cm)
        for j, cin in ((2 * k, c_in), (2 * k + 1, c_out)):
            styled(f"convs.{j}", cin, c_out, 3)
            shapes[f"convs.{j}.noise.weight"] = (1,)
            shapes[f"convs.{j}.activate.bias"] = (c_out,)
        shapes[f"convs.{2 * k}.conv.blur.kernel"] = (4, 4)
        styled(f"to_rgbs.{k}", c_out, 3, 1)
        shapes[f"to_rgbs.{k}.bias"] = (1, 3, 1, 1)
        shapes[f"to_rgbs.{k}.upsample.kernel"] = (4, 4)
    for n in range(2 * log_size - 3):
        r = 2 ** ((n + 5) // 2)
        shapes[f"noises.noise_{n}"] = (1, 1, r, r)
    return shapes


def spec_discriminator_shapes(size: int, cm: int) -> dict[str, tuple[int, ...]]:
    """The discriminator layout of spec §9.5 (rosinality ConvLayer/ResBlock indexing)."""
    top = spec_channels(size, cm)
    shapes: dict[str, tuple[int, ...]] = {"convs.0.0.weight": (top, 3, 1, 1), "convs.0.1.bias": (top,)}
    res, j = size, 1
    while res > 4:
        c_in, c_out = spec_channels(res, cm), spec_channels(res // 2, cm)
        shapes |= {
            f"convs.{j}.conv1.0.weight": (c_in, c_in, 3, 3), f"convs.{j}.conv1.1.bias": (c_in,),
            f"convs.{j}.conv2.0.kernel": (4, 4), f"convs.{j}.conv2.1.weight": (c_out, c_in, 3, 3),
            f"convs.{j}.conv2.2.bias": (c_out,),
            f"convs.{j}.skip.0.kernel": (4, 4), f"convs.{j}.skip.1.weight": (c_out, c_in, 1, 1),
        }
        res, j = res // 2, j + 1
    shapes |= {"final_conv.0.weight": (512, 513, 3, 3), "final_conv.1.bias": (512,),
               "final_linear.0.weight": (512, 512 * 16), "final_linear.0.bias": (512,),
               "final_linear.1.weight": (1, 512), "final_linear.1.bias": (1,)}
    return shapes


def shapes_of(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


@pytest.mark.parametrize("size", [64, 128, 256, 512])
@pytest.mark.parametrize("cm", [1, 2])
def test_state_dicts_match_spec_tables(size: int, cm: int) -> None:
    with torch.device("meta"):
        arch = StyleGAN2Arch(size, channel_multiplier=cm)
        gen, disc = Generator(arch), Discriminator(arch)
    assert shapes_of(gen) == spec_generator_shapes(size, cm)
    assert shapes_of(disc) == spec_discriminator_shapes(size, cm)
    assert gen.n_latent == 2 * int(math.log2(size)) - 2


@pytest.mark.parametrize(("size", "cm", "tensors", "mparams"),
                         [(128, 1, 117, 24.53), (128, 2, 117, 29.33), (64, 1, 99, 23.82), (64, 2, 99, 27.03)])
def test_tensor_and_parameter_counts_match_spec(size: int, cm: int, tensors: int, mparams: float) -> None:
    with torch.device("meta"):
        gen = Generator(StyleGAN2Arch(size, channel_multiplier=cm))
    assert len(gen.state_dict()) == tensors
    assert round(sum(p.numel() for p in gen.parameters()) / 1e6, 2) == mparams


@pytest.mark.parametrize(("size", "cm", "input_size", "expected"), [
    (128, 1, 128, [(256, 64), (512, 32), (512, 16), (512, 8)]),
    (256, 1, 128, [(128, 64), (256, 32), (512, 16), (512, 8)]),
    (256, 2, 128, [(256, 64), (512, 32), (512, 16), (512, 8)]),
    (512, 2, 128, [(128, 64), (256, 32), (512, 16), (512, 8)]),
    (128, 1, 64, [(256, 32), (512, 16), (512, 8), (512, 4)]),
])
def test_discriminator_feature_shapes(size: int, cm: int, input_size: int, expected: list) -> None:
    """Spec §9.5: the four feature maps GAN2Shape uses, for S×S inputs (shape propagation only)."""
    with torch.device("meta"):
        disc = Discriminator(StyleGAN2Arch(size, channel_multiplier=cm))
        feats = disc.features(torch.empty(2, 3, input_size, input_size))
    assert [(f.shape[1], f.shape[2]) for f in feats] == expected


def test_channel_cap_and_compact_mapping() -> None:
    arch = StyleGAN2Arch(64, style_dim=128, n_mlp=4, channel_multiplier=1, channel_max=128)
    with torch.device("meta"):
        shapes = shapes_of(Generator(arch))
    assert shapes["input.input"] == (1, 128, 4, 4)
    assert shapes["convs.7.conv.weight"] == (1, 128, 128, 3, 3)
    assert shapes["style.4.weight"] == (128, 128) and "style.5.weight" not in shapes
    assert shapes["convs.0.conv.modulation.weight"] == (128, 128)
    assert [arch.channels(r) for r in (4, 32, 64, 128, 256)] == [128, 128, 128, 128, 64]


@pytest.mark.parametrize("size", [4, 48, 2048])
def test_invalid_sizes_are_rejected(size: int) -> None:
    with pytest.raises(ValueError, match="power of two"):
        StyleGAN2Arch(size)
