"""StyleGAN2 generator and discriminator with the exact state-dict layout of rosinality's
stylegan2-pytorch (spec §9), so official checkpoints load strictly; plus a channel cap and a
configurable mapping network for compact models trained here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .ops import SQRT2, Blur, EqualConv2d, EqualLinear, FusedLeakyReLU, PixelNorm, Upsample

BLUR_TAPS = (1, 3, 3, 1)
ModConvMode = Literal["auto", "grouped", "activation"]
NoiseSpec = Literal["stored", "random"] | Sequence[torch.Tensor | None]


@dataclass(frozen=True)
class StyleGAN2Arch:
    """Everything needed to rebuild a generator/discriminator pair (stored as ckpt["arch"])."""

    size: int
    style_dim: int = 512
    n_mlp: int = 8
    channel_multiplier: int = 2
    channel_max: int = 512
    lr_mlp: float = 0.01

    def __post_init__(self) -> None:
        if self.size < 8 or self.size > 1024 or self.size & (self.size - 1):
            raise ValueError(f"size must be a power of two in [8, 1024], got {self.size}")
        if min(self.style_dim, self.n_mlp, self.channel_multiplier, self.channel_max) < 1:
            raise ValueError(f"invalid architecture {self}")

    @property
    def log_size(self) -> int:
        return int(math.log2(self.size))

    @property
    def n_latent(self) -> int:
        """Number of style inputs of the synthesis network (W+ rows)."""
        return 2 * self.log_size - 2

    @property
    def num_layers(self) -> int:
        """Number of noise inputs (= styled convolutions)."""
        return 2 * self.log_size - 3

    def channels(self, resolution: int) -> int:
        """Feature channels at a resolution: 512 up to 32², then 2^14·cm/res, capped at channel_max."""
        base = 512 if resolution <= 32 else (2**14 * self.channel_multiplier) // resolution
        return min(self.channel_max, base)

    def to_dict(self) -> dict:
        return asdict(self)


def _modconv_mode(mode: ModConvMode, x: torch.Tensor) -> str:
    """'auto' → activation scaling on CPU (1.8-2.4× faster there), grouped conv elsewhere."""
    if mode == "auto":
        return "activation" if x.device.type == "cpu" else "grouped"
    return mode


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    """channels_last on CPU, where oneDNN's depthwise and transposed convolutions are much faster in it."""
    return torch.channels_last if x.device.type == "cpu" else torch.contiguous_format


class ModulatedConv2d(nn.Module):
    """Style-modulated (optionally demodulated, optionally 2× upsampling) convolution.

    Two formulations of the same function: "grouped" folds the style into per-sample weights
    (one grouped conv, as the original); "activation" scales the input channels by the style,
    convolves with the shared weight and demodulates the output — cheaper on CPU. 1×1 kernels
    (ToRGB) always use per-sample weights as one batched matmul, which beats both.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False, mode: ModConvMode = "auto"):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1.0)
        if upsample:
            # transposed conv 3×3 stride 2 gives 2H+1 samples; the blur brings them back to 2H
            p = len(BLUR_TAPS) - 2 - (kernel_size - 1)
            self.blur = Blur(BLUR_TAPS, pad=((p + 1) // 2 + 1, p // 2 + 1), upsample_factor=2)
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.padding = kernel_size // 2
        self.demodulate = demodulate
        self.upsample = upsample
        self.mode: ModConvMode = mode

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        out, gain = self.modulated(x, style)
        return out if gain is None else out * gain[:, :, None, None]

    def modulated(self, x: torch.Tensor, style: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(output before demodulation, per-sample per-channel demodulation gain B×C_out or None).

        Split so StyledConv can fuse the gain with noise, bias and activation in one pass.
        """
        s = self.modulation(style) * self.scale
        if self.weight.shape[-1] == 1 and not self.upsample:
            return self._batched_matmul(x, s), None
        if _modconv_mode(self.mode, x) == "grouped":
            out, gain = self._grouped(x, s), None
        else:
            out, gain = self._activation(x, s)
        return (self.blur(out) if self.upsample else out), gain

    def _per_sample_weight(self, s: torch.Tensor) -> torch.Tensor:
        """B×C_out×C_in×k×k weights with the style folded in (and demodulated)."""
        weight = self.weight * s[:, None, :, None, None]
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.square().sum((2, 3, 4), keepdim=True) + 1e-8)
        return weight

    def _batched_matmul(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        b, c_in, h, w = x.shape
        weight = self._per_sample_weight(s).view(b, -1, c_in)
        if x.is_contiguous(memory_format=torch.channels_last):
            out = torch.bmm(x.permute(0, 2, 3, 1).reshape(b, h * w, c_in), weight.transpose(1, 2))
            return out.view(b, h, w, -1).permute(0, 3, 1, 2)
        return torch.bmm(weight, x.reshape(b, c_in, h * w)).view(b, -1, h, w)

    def _activation(self, x: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        w = self.weight[0]
        x = x * s[:, :, None, None]
        if self.upsample:
            out = F.conv_transpose2d(x, w.transpose(0, 1), stride=2)
        else:
            out = F.conv2d(x, w, padding=self.padding)
        if not self.demodulate:
            return out, None
        # Σ_{i,kh,kw} (W_oi s_i)² = (s²) · (Σ_k W²)ᵀ
        return out, torch.rsqrt(s.square() @ w.square().sum((2, 3)).t() + 1e-8)

    def _grouped(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        b, c_in, h, w_ = x.shape
        weight = self._per_sample_weight(s)
        _, c_out, _, k, _ = weight.shape
        x = x.reshape(1, b * c_in, h, w_)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(b * c_in, c_out, k, k)
            out = F.conv_transpose2d(x, weight, stride=2, groups=b)
        else:
            out = F.conv2d(x, weight.reshape(b * c_out, c_in, k, k), padding=self.padding, groups=b)
        return out.view(b, c_out, *out.shape[2:])


class NoiseInjection(nn.Module):
    """Holds the scalar noise strength `weight` (applied in StyledConv's fused epilogue)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))


class StyledConv(nn.Module):
    """Modulated conv → + weight·noise → bias + scaled leaky ReLU, the last three in one fused pass."""

    def __init__(self, in_channels: int, out_channels: int, style_dim: int, upsample: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, style_dim, upsample=upsample)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channels)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        """noise: 1×1×H×W or B×1×H×W, or None for fresh N(0,1) noise."""
        out, gain = self.conv.modulated(x, style)
        b, c, h, w = out.shape
        if noise is None:
            noise = out.new_empty(b, 1, h, w).normal_()
        # √2·leaky_relu(z) = leaky_relu(√2·z) with z = out·gain + weight·noise + bias
        if out.is_contiguous(memory_format=torch.channels_last):  # build the shift in the same layout
            shift = (self.noise.weight * SQRT2) * noise.reshape(-1, h, w, 1) + self.activate.bias * SQRT2
            shift = shift.permute(0, 3, 1, 2)
        else:
            shift = (self.noise.weight * SQRT2) * noise + (self.activate.bias * SQRT2).view(1, c, 1, 1)
        if gain is None:
            out = torch.add(shift, out, alpha=SQRT2)
        else:
            out = torch.addcmul(shift, out, (gain * SQRT2)[:, :, None, None])
        return F.leaky_relu_(out, 0.2)


class ToRGB(nn.Module):
    """1×1 modulated conv to RGB (no demodulation) + bias, added to the upsampled previous skip."""

    def __init__(self, in_channels: int, style_dim: int, upsample: bool = True):
        super().__init__()
        if upsample:
            self.upsample = Upsample(BLUR_TAPS)
        self.conv = ModulatedConv2d(in_channels, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias
        return out if skip is None else out + self.upsample(skip)


class ConstantInput(nn.Module):
    """The learned 4×4 starting tensor (parameter `input`)."""

    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        x = self.input.expand(batch, -1, -1, -1)
        return x.contiguous(memory_format=_memory_format(x))


class Generator(nn.Module):
    """StyleGAN2 generator: mapping network `style` (PixelNorm + n_mlp EqualLinear) and synthesis.

    Latent conventions: z and w are B×style_dim; W+ is B×n_latent×style_dim. Noise buffers
    `noises.noise_n` are fixed at construction (and loaded from checkpoints).
    """

    def __init__(self, arch: StyleGAN2Arch, modconv: ModConvMode = "auto"):
        super().__init__()
        self.arch = arch
        dim = arch.style_dim
        self.style = nn.Sequential(
            PixelNorm(),
            *(EqualLinear(dim, dim, lr_mul=arch.lr_mlp, activation=True) for _ in range(arch.n_mlp)),
        )
        ch4 = arch.channels(4)
        self.input = ConstantInput(ch4)
        self.conv1 = StyledConv(ch4, ch4, dim)
        self.to_rgb1 = ToRGB(ch4, dim, upsample=False)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        c_in = ch4
        for log_res in range(3, arch.log_size + 1):
            c_out = arch.channels(2**log_res)
            self.convs.append(StyledConv(c_in, c_out, dim, upsample=True))
            self.convs.append(StyledConv(c_out, c_out, dim))
            self.to_rgbs.append(ToRGB(c_out, dim))
            c_in = c_out
        self.noises = nn.Module()
        for i in range(arch.num_layers):
            res = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, res, res))
        self.set_modconv_mode(modconv)

    @property
    def n_latent(self) -> int:
        return self.arch.n_latent

    @property
    def style_dim(self) -> int:
        return self.arch.style_dim

    def set_modconv_mode(self, mode: ModConvMode) -> None:
        """Choose the modulated-conv formulation for every layer ('auto' picks per device)."""
        if mode not in ("auto", "grouped", "activation"):
            raise ValueError(f"unknown modulated-conv mode {mode!r}")
        for m in self.modules():
            if isinstance(m, ModulatedConv2d):
                m.mode = mode

    # -- mapping -------------------------------------------------------------------------------
    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """z (B×dim) → w (B×dim) through PixelNorm and all mapping layers."""
        return self.style(z)

    def partial_mapping(self, x: torch.Tensor, skip: int = 0, depth: int | None = None) -> torch.Tensor:
        """Apply mapping modules with index in [skip, depth); index 0 is PixelNorm (spec §5.4)."""
        return self.style[skip:depth](x)

    def sample_w(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """mapping(z) for n draws of z ~ N(0, I) from `generator` (on the generator's own device)."""
        device = self.input.input.device
        z = torch.randn(n, self.style_dim, generator=generator,
                        device=generator.device if generator is not None else device)
        return self.mapping(z.to(device))

    @torch.no_grad()
    def mean_latent(self, n: int = 4096, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean of mapping(z) over n samples of z ~ N(0, I), shape 1×dim."""
        return self.sample_w(n, generator).mean(0, keepdim=True)

    @staticmethod
    def truncate(w: torch.Tensor, psi: float, w_avg: torch.Tensor) -> torch.Tensor:
        """Truncation trick w_avg + ψ (w − w_avg) (any latent layout; w_avg broadcasts)."""
        return w_avg + psi * (w - w_avg) if psi != 1 else w

    def mix_latents(self, w1: torch.Tensor, w2: torch.Tensor, crossover: int) -> torch.Tensor:
        """Style mixing: W+ taking w1 for style inputs [0, crossover) and w2 for the rest."""
        n = self.n_latent
        return torch.cat([w1.unsqueeze(1).expand(-1, crossover, -1),
                          w2.unsqueeze(1).expand(-1, n - crossover, -1)], dim=1)

    # -- synthesis -----------------------------------------------------------------------------
    def stored_noise(self) -> list[torch.Tensor]:
        return [getattr(self.noises, f"noise_{i}") for i in range(self.arch.num_layers)]

    def _noise_list(self, noise: NoiseSpec) -> Sequence[torch.Tensor | None]:
        if isinstance(noise, str):
            if noise == "stored":
                return self.stored_noise()
            if noise == "random":
                return [None] * self.arch.num_layers
            raise ValueError(f"noise must be 'stored', 'random' or a list of tensors, got {noise!r}")
        if len(noise) != self.arch.num_layers:
            raise ValueError(f"expected {self.arch.num_layers} noise tensors, got {len(noise)}")
        return noise

    def synthesis(self, latent: torch.Tensor, noise: NoiseSpec = "stored") -> torch.Tensor:
        """W (B×dim, used for every layer) or W+ (B×n_latent×dim) → image B×3×size×size (no clamp).

        Layer i of the style inputs: conv1 ← 0, to_rgb1 ← 1, block k ← (1+2k, 2+2k, 3+2k).
        """
        if latent.ndim == 2:
            latent = latent.unsqueeze(1).expand(-1, self.n_latent, -1)
        if latent.ndim != 3 or latent.shape[1:] != (self.n_latent, self.style_dim):
            raise ValueError(f"latent must be B×{self.style_dim} or B×{self.n_latent}×{self.style_dim}, "
                             f"got {tuple(latent.shape)}")
        noises = self._noise_list(noise)
        out = self.conv1(self.input(latent.shape[0]), latent[:, 0], noises[0])
        skip = self.to_rgb1(out, latent[:, 1])
        for k, to_rgb in enumerate(self.to_rgbs):
            i = 1 + 2 * k
            out = self.convs[2 * k](out, latent[:, i], noises[i])
            out = self.convs[2 * k + 1](out, latent[:, i + 1], noises[i + 1])
            skip = to_rgb(out, latent[:, i + 2], skip)
        return skip.contiguous()

    def forward(self, latent: torch.Tensor, noise: NoiseSpec = "stored") -> torch.Tensor:
        """Same as `synthesis` (the module call takes W / W+, not z)."""
        return self.synthesis(latent, noise)


class ConvLayer(nn.Sequential):
    """[Blur] → EqualConv2d → [bias + leaky ReLU], indexed like the original nn.Sequential.

    The forward pass folds the activation's bias and √2 gain into the convolution (one conv and
    one in-place activation); `gain` scales the output too (leaky ReLU is positively homogeneous).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, downsample: bool = False,
                 bias: bool = True, activate: bool = True):
        layers: list[nn.Module] = []
        if downsample:
            p = len(BLUR_TAPS) - 2 + (kernel_size - 1)
            layers.append(Blur(BLUR_TAPS, pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(EqualConv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                                  bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_channels, bias=bias))
        super().__init__(*layers)

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        modules = list(self)
        if isinstance(modules[0], Blur):
            x = modules.pop(0)(x)
        conv: EqualConv2d = modules[0]  # type: ignore[assignment]
        act = modules[1] if len(modules) > 1 else None
        if act is not None:
            gain *= SQRT2
        bias = act.bias if act is not None else conv.bias
        out = F.conv2d(x, conv.weight * (conv.scale * gain), None if bias is None else bias * gain,
                       stride=conv.stride, padding=conv.padding)
        return F.leaky_relu_(out, 0.2) if act is not None else out


class ResBlock(nn.Module):
    """Residual 2× downsampling block: (conv2(conv1(x)) + skip(x)) / √2."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=True)
        self.skip = ConvLayer(in_channels, out_channels, 1, downsample=True, activate=False, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = 1 / math.sqrt(2)
        return self.conv2(self.conv1(x), gain=half) + self.skip(x, gain=half)


class Discriminator(nn.Module):
    """StyleGAN2 residual discriminator (rosinality layout); `features` gives GAN2Shape's feature maps."""

    def __init__(self, arch: StyleGAN2Arch, stddev_group: int = 4):
        super().__init__()
        self.arch = arch
        blocks: list[nn.Module] = [ConvLayer(3, arch.channels(arch.size), 1)]
        c_in = arch.channels(arch.size)
        for log_res in range(arch.log_size, 2, -1):
            c_out = arch.channels(2 ** (log_res - 1))
            blocks.append(ResBlock(c_in, c_out))
            c_in = c_out
        self.convs = nn.Sequential(*blocks)
        self.stddev_group = stddev_group
        ch4 = arch.channels(4)
        self.final_conv = ConvLayer(c_in + 1, ch4, 3)
        self.final_linear = nn.Sequential(EqualLinear(ch4 * 16, ch4, activation=True), EqualLinear(ch4, 1))

    def features(self, images: torch.Tensor, n_blocks: int = 4) -> list[torch.Tensor]:
        """Outputs of residual blocks convs.1 … convs.n_blocks (fewer if the network is shallower).

        Works on any input size divisible by 2^n_blocks (GAN2Shape feeds S×S, not the GAN size).
        """
        out = self.convs[0](images.contiguous(memory_format=_memory_format(images)))
        feats = []
        for block in list(self.convs)[1:1 + n_blocks]:
            out = block(out)
            feats.append(out.contiguous())  # callers may .view(); runs channels-last on CPU
        return feats

    def _stddev_feature(self, x: torch.Tensor) -> torch.Tensor:
        """Minibatch standard deviation over groups of samples, appended as one channel."""
        b, c, h, w = x.shape
        group = min(b, self.stddev_group)
        while b % group:
            group -= 1
        grouped = x.view(group, b // group, c, h, w)
        std = torch.sqrt(grouped.var(0, unbiased=False) + 1e-8).mean((1, 2, 3))  # (b/group,)
        std = std.view(1, -1, 1, 1, 1).expand(group, -1, 1, h, w).reshape(b, 1, h, w)
        return torch.cat([x, std], 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images (size×size) → realness logits B×1."""
        out = self.convs(images.contiguous(memory_format=_memory_format(images)))
        out = self.final_conv(self._stddev_feature(out))
        return self.final_linear(out.flatten(1))
