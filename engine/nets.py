"""The five trainable networks of GAN2Shape (spec §2), their output parameterisations, checkpoints.

Public API:

    EDDeconv(cin, cout, size, width=1.0, tanh=False, skips=False, image_skip=False)
        depth net D (cout=1) / albedo net A (cout=3, tanh)
    Encoder(cin, cout, size, width=1.0)                    view net V (cout=6) / light net L (cout=4), tanh
    ResEncoder(cin, cout, size, width=1.0)                 latent-offset encoder E (cout=512)
    build_nets(image_size, width=1.0, latent_dim=512, view_light_width=None, depth_skips=False,
               depth_image_skip=False)
        {"netD", "netA", "netV", "netL", "netEnc"}; width 1.0 gives the official sizes and state-dict names
        (`network.<index>.*` of one nn.Sequential), so official *_pretrain.pth files load.
    load_gan2shape_checkpoint(path, nets, strict=True) -> list[str]   loads the nets present in the file
        (weights_only, map_location cpu, exact key/shape check); returns the names loaded.
    save_gan2shape_checkpoint(path, nets, extra=None)       atomic, same layout as the official files.
    describe_checkpoint(path) -> str                        validator for `engine info` (kind "gan2shape").
    depth_skip_config(data) -> {"depth_skips": bool, "depth_image_skip": bool}   the skips of a loaded file's netD

    depth_from_raw(raw, min_depth=0.9, max_depth=1.1) -> B×H×W       tanh(raw − spatial mean), rescaled
    clamp_border(depth, border_depth=1.04, factor=1.02, width=2)     QUIRK 1.02 of §2.5 (factor=1 = Unsup3d)
    albedo_to_unit(albedo) -> (albedo + 1)/2
    view_to_transform(view, rot_range_deg=60, xy_range=0.1, z_range=0) -> B×6 (radians, translations)
    light_params(light) -> (k_a B, k_d B, direction B×3)               §2.5, no clamping
    light_units(k_a, k_d, direction) -> light B×4                     its inverse (the bank's sampled lights)
    Mvn(mean, cov); load_mvn(path) -> Mvn; builtin_view_mvn(); builtin_light_mvn(); resolve_mvn(name_or_path, kind)
    MappingOffset(generator, f1_d)  — §5.4: callable h (B×dim) [, h_ref] -> Δw (B×dim), exactly 0 for h = 0.

Built-in MVN defaults (used when the preset names no file or the named file is not installed; the
official files are release downloads that are not available here, spec §15.1). They are an
engineering choice, not estimated from data:
  * view: mean 0 (frontal, centred); diagonal std (pitch 0.10, yaw 0.25, roll 0.05, tx 0.05, ty 0.05,
    tz 0) in V's normalised units, i.e. about 6° pitch, 15° yaw, 3° roll and 0.5 % of the frame at
    depth 1 (one σ). Yaw dominates because the method learns shape mostly from left-right views
    (view_scale 1.2 widens it to 18°); pitch and roll are kept small so most pseudo samples stay in
    the range a GAN trained on roughly frontal photos can reproduce. The issue-#17 advice applies:
    estimate real files for a new category (mean/cov of a trained V over the data) when possible.
  * light: mean 0, i.e. what a freshly initialised L (outputs ≈ 0, §2.6) implies: k_a = k_d = 0.5 and
    a frontal direction (0, 0, 1); covariance 0.1·I (the method never uses it, §5.1).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .errors import EngineError
from .io import atomic_path, load_torch

NET_NAMES = ("netD", "netA", "netV", "netL", "netEnc")


def _scaled(channels: int, width: float) -> int:
    """Channels scaled by the width factor, kept a multiple of 4 (GroupNorm uses 4 channels per group)."""
    return max(4, 4 * round(channels * width / 4))


# the config key of each kind of EDDeconv skip -> the prefix of its state-dict keys
SKIP_KEYS = {"depth_skips": "skips.", "depth_image_skip": "image_skip."}
SKIP_PREFIXES = tuple(SKIP_KEYS.values())


def _nf(size: int, width: float) -> int:
    return _scaled(max(4096 // size, 16), width)


def _extra_blocks(size: int) -> int:
    extra = int(math.log2(size)) - 6
    if extra < 0 or 2 ** (extra + 6) != size:
        raise EngineError(f"image size {size} is not supported by the 3D networks (use 64, 128 or 256)")
    return extra


def _gn(channels: int) -> nn.GroupNorm:
    """GroupNorm with 4 channels per group: the official GN(gn_base·k, nf·k) for every size."""
    return nn.GroupNorm(max(1, channels // 4), channels)


class EDDeconv(nn.Module):
    """Encoder-decoder of D and A (spec §2.1); indices of the Sequential match the official file.

    skips=True (not official) adds each encoder level's features, through a 1×1 conv, to the decoder's
    output at the same resolution. Why: the official net squeezes the image through a 1×1 code, so a
    depth map's detail must be regenerated from it; the skips hand it over. The 1×1 convs start at zero,
    so a skip net is exactly the plain one until trained, and a plain checkpoint loads into it.

    image_skip=True (not official) adds features of the input itself (3×3 conv, LeakyReLU, 3×3 conv) to the
    decoder's first full-resolution features (after its last up-sampling). Why: the encoder's finest level is
    already half the resolution, so the decoder cannot place a depth edge on the pixel; half the squared SIDE of
    the taught D lay on the 5 % of pixels with the steepest true depth (self-occlusion edges). Its last conv
    starts at zero (the first keeps its random start, or no gradient would reach either); two layers gained
    twice what one 3×3 conv did (docs/default-model.md, item 27)."""

    def __init__(self, cin: int, cout: int, size: int, width: float = 1.0, tanh: bool = False,
                 skips: bool = False, image_skip: bool = False):
        nf, extra = _nf(size, width), _extra_blocks(size)
        top = nf * 8 * 2**extra  # 512 at width 1 for every size
        zdim = top // 2
        layers: list[nn.Module] = []
        ch = [nf, nf * 2, nf * 4] + [nf * 8 * 2**i for i in range(extra)]
        taps: list[int] = []  # indices of the encoder levels' outputs, then of the decoder's, finest first
        prev = cin
        for c in ch:  # down-sampling convs with GN + LeakyReLU
            layers += [nn.Conv2d(prev, c, 4, 2, 1, bias=False), _gn(c), nn.LeakyReLU(0.2, inplace=True)]
            taps.append(len(layers) - 1)
            prev = c
        layers += [nn.Conv2d(prev, top, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)]
        taps.append(len(layers) - 1)
        layers += [nn.Conv2d(top, zdim, 4, 1, 0, bias=False), nn.ReLU(inplace=True),
                   nn.ConvTranspose2d(zdim, top, 4, 1, 0, bias=False), nn.ReLU(inplace=True),
                   nn.Conv2d(top, top, 3, 1, 1, bias=False), nn.ReLU(inplace=True)]
        ups = [len(layers) - 1]
        prev = top
        for c in reversed(ch):  # up-sampling blocks
            layers += [nn.ConvTranspose2d(prev, c, 4, 2, 1, bias=False), _gn(c), nn.ReLU(inplace=True),
                       nn.Conv2d(c, c, 3, 1, 1, bias=False), _gn(c), nn.ReLU(inplace=True)]
            ups.append(len(layers) - 1)
            prev = c
        full = len(layers)  # index of the decoder's last up-sampling: its output is at full resolution
        layers += [nn.Upsample(scale_factor=2, mode="nearest"),
                   nn.Conv2d(nf, nf, 3, 1, 1, bias=False), _gn(nf), nn.ReLU(inplace=True),
                   nn.Conv2d(nf, nf, 5, 1, 2, bias=False), _gn(nf), nn.ReLU(inplace=True),
                   nn.Conv2d(nf, cout, 5, 1, 2, bias=False)]
        if tanh:
            layers.append(nn.Tanh())
        super().__init__()
        self.network = nn.Sequential(*layers)
        self.skips: nn.ModuleList | None = None
        if skips:
            self.skips = nn.ModuleList(nn.Conv2d(c, c, 1, bias=False) for c in [top, *reversed(ch)])
            for conv in self.skips:
                nn.init.zeros_(conv.weight)
        # decoder output index -> (encoder output index, skip conv) at the same resolution
        self._pairs = dict(zip(ups, zip(reversed(taps), range(len(ups)), strict=True), strict=True)) if skips else {}
        self._taps = set(taps) if skips else set()
        self.image_skip: nn.Sequential | None = None
        if image_skip:
            self.image_skip = nn.Sequential(nn.Conv2d(cin, nf, 3, 1, 1, bias=False), nn.LeakyReLU(0.2),
                                            nn.Conv2d(nf, nf, 3, 1, 1, bias=False))
            nn.init.zeros_(self.image_skip[-1].weight)
        self._full = full

    def zero_skips(self, keys: Iterable[str]) -> None:
        """Zero the last conv of each skip that `keys` (a loaded state dict's) do not hold: a file taught
        without them is then the same function in this net."""
        keys = set(keys)
        last = {id(m) for m in (*(self.skips or ()), *(self.image_skip[-1:] if self.image_skip is not None else ()))}
        for name, module in self.named_modules():
            if id(module) in last and f"{name}.weight" not in keys:
                nn.init.zeros_(module.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.skips is None and self.image_skip is None:
            return self.network(x)
        image = x
        kept: dict[int, torch.Tensor] = {}
        for i, layer in enumerate(self.network):
            x = layer(x)
            if i in self._taps:
                kept[i] = x
            elif i in self._pairs:
                enc, k = self._pairs[i]
                x = x + self.skips[k](kept.pop(enc))
            if i == self._full and self.image_skip is not None:
                x = x + self.image_skip(image)
        return x


class Encoder(nn.Module):
    """Plain conv encoder of V and L (spec §2.2): B×cin×S×S → B×cout in (−1, 1)."""

    def __init__(self, cin: int, cout: int, size: int, width: float = 1.0):
        super().__init__()
        nf, extra = _nf(size, width), _extra_blocks(size)
        chans = [nf, nf * 2, nf * 4, nf * 8] + [nf * 8 * 2 ** (i + 1) for i in range(extra)]
        layers: list[nn.Module] = []
        prev = cin
        for c in chans:
            layers += [nn.Conv2d(prev, c, 4, 2, 1, bias=False), nn.ReLU(inplace=True)]
            prev = c
        layers += [nn.Conv2d(prev, prev, 4, 1, 0, bias=False), nn.ReLU(inplace=True),
                   nn.Conv2d(prev, cout, 1, 1, 0, bias=False), nn.Tanh()]
        self.network = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x).flatten(1)


class ResBlockDown(nn.Module):
    """Residual down-sampling block of E; QUIRK: the shortcut also sees relu(x) (in-place ReLU, §2.3)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, 2, 1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.conv_sc = nn.Conv2d(cin, cout, 1, 1, 0, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        h = self.conv2(F.relu(self.conv1(x)))
        return self.conv_sc(F.avg_pool2d(x, 2)) + h


class ResEncoder(nn.Module):
    """Latent-offset encoder E (spec §2.3): B×cin×S×S → B×cout, no output activation."""

    def __init__(self, cin: int, cout: int, size: int, width: float = 1.0):
        super().__init__()
        nf = _scaled(32, width)
        n_blocks = int(math.log2(size)) - 3
        _extra_blocks(size)
        layers: list[nn.Module] = [nn.Conv2d(cin, nf, 4, 2, 1, bias=False)]
        prev = nf
        for _ in range(n_blocks):
            layers.append(ResBlockDown(prev, prev * 2))
            prev *= 2
        layers += [nn.ReLU(), nn.Conv2d(prev, prev * 2, 4, 1, 0, bias=False), nn.ReLU(),
                   nn.Conv2d(prev * 2, cout, 1, 1, 0, bias=False)]
        self.network = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x).flatten(1)


def build_nets(image_size: int, width: float = 1.0, latent_dim: int = 512,
               view_light_width: float | None = None, depth_skips: bool = False,
               depth_image_skip: bool = False) -> dict[str, nn.Module]:
    """The five networks at PyTorch's default init (the official init, §2); V and L at `view_light_width`
    when given (a V/L file taught once for a category need not be as wide as the per-image D and A);
    D with the encoder-to-decoder skips of EDDeconv when `depth_skips`, its image skip when `depth_image_skip`."""
    vl = width if view_light_width is None else view_light_width
    return {
        "netD": EDDeconv(3, 1, image_size, width, skips=depth_skips, image_skip=depth_image_skip),
        "netA": EDDeconv(3, 3, image_size, width, tanh=True),
        "netV": Encoder(3, 6, image_size, vl),
        "netL": Encoder(3, 4, image_size, vl),
        "netEnc": ResEncoder(3, latent_dim, image_size, width),
    }


# ----------------------------------------------------------------------------------------------
# Output parameterisations (§2.5)


def depth_from_raw(raw: torch.Tensor, min_depth: float = 0.9, max_depth: float = 1.1) -> torch.Tensor:
    """D's raw output (B×1×H×W or B×H×W) → depth B×H×W: tanh(raw − spatial mean) mapped to [min, max]."""
    if raw.dim() == 4:
        raw = raw.squeeze(1)
    t = torch.tanh(raw - raw.mean(dim=(1, 2), keepdim=True))
    return (1 + t) / 2 * max_depth + (1 - t) / 2 * min_depth


def clamp_border(depth: torch.Tensor, border_depth: float = 1.04, factor: float = 1.02,
                 width: int = 2) -> torch.Tensor:
    """Push the `width` leftmost/rightmost columns to `border_depth`.

    QUIRK (official, §2.5): the mask value is `factor` = 1.02, so border columns become
    1.02·border_depth − 0.02·depth (≈ 1.04) and keep a small negative gradient; factor=1 is Unsup3d.
    """
    w = depth.shape[-1]
    bm = torch.zeros(w, dtype=depth.dtype, device=depth.device)
    bm[:width] = factor
    bm[w - width:] = factor
    return depth * (1 - bm) + bm * border_depth


def albedo_to_unit(albedo: torch.Tensor) -> torch.Tensor:
    """A's output in (−1, 1) → reflectance in (0, 1) used for shading."""
    return albedo / 2 + 0.5


def view_to_transform(view: torch.Tensor, rot_range_deg: float = 60.0, xy_range: float = 0.1,
                      z_range: float = 0.0) -> torch.Tensor:
    """Normalised view (B×6, V's output plus the mean) → renderer view (rx, ry, rz in radians, tx, ty, tz)."""
    rot = view[:, :3] * math.radians(rot_range_deg)
    return torch.cat([rot, view[:, 3:5] * xy_range, view[:, 5:6] * z_range], dim=1)


def light_params(light: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Normalised light (B×4) → ambient k_a (B), diffuse k_d (B), unit direction normalise(l2, l3, 1) (B×3)."""
    k_a = light[:, 0] / 2 + 0.5
    k_d = light[:, 1] / 2 + 0.5
    d = torch.cat([light[:, 2:4], torch.ones_like(light[:, :1])], dim=1)
    return k_a, k_d, d / d.norm(dim=1, keepdim=True)


def light_units(ambient: torch.Tensor, diffuse: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """The inverse of `light_params`: (k_a B, k_d B, direction B×3 with positive z) → normalised light B×4."""
    xy = direction[:, :2] / direction[:, 2:3]
    return torch.cat([(2 * ambient - 1)[:, None], (2 * diffuse - 1)[:, None], xy], dim=1)


# ----------------------------------------------------------------------------------------------
# View / light distributions (§5.1)


@dataclass(frozen=True)
class Mvn:
    """A multivariate normal in the nets' normalised units; `source` says where it came from."""

    mean: torch.Tensor
    cov: torch.Tensor
    source: str

    def distribution(self) -> torch.distributions.MultivariateNormal:
        return torch.distributions.MultivariateNormal(self.mean, covariance_matrix=self.cov)


def builtin_view_mvn() -> Mvn:
    std = torch.tensor([0.10, 0.25, 0.05, 0.05, 0.05, 0.0])
    return Mvn(torch.zeros(6), torch.diag(std**2 + 1e-8), "built-in view default (engine.nets)")


def builtin_light_mvn() -> Mvn:
    return Mvn(torch.zeros(4), 0.1 * torch.eye(4), "built-in light default (engine.nets)")


def load_mvn(path: str | Path, dim: int | None = None) -> Mvn:
    """Read an official view/light MVN file ({'mean': n, 'cov': n×n}), checking shapes."""
    data = load_torch(path)
    if not isinstance(data, Mapping) or "mean" not in data or "cov" not in data:
        raise EngineError("expected a dict with 'mean' and 'cov' tensors", path)
    mean = torch.as_tensor(data["mean"], dtype=torch.float32).flatten()
    cov = torch.as_tensor(data["cov"], dtype=torch.float32)
    n = mean.numel()
    if dim is not None and n != dim:
        raise EngineError(f"'mean' has {n} entries, expected {dim}", path)
    if tuple(cov.shape) != (n, n):
        raise EngineError(f"'cov' has shape {tuple(cov.shape)}, expected ({n}, {n})", path)
    return Mvn(mean, cov, str(path))


def describe_mvn(path: str | Path) -> str:
    """For `engine info`: check a view/light distribution file and say what it holds."""
    return f"mvn, {load_mvn(path).mean.numel()}-D"


def resolve_mvn(name_or_path: str | None, kind: str) -> Mvn:
    """A manifest name or path → its MVN; None or a manifest entry whose file is absent → the built-in
    default (check `.source` and report it: the pipeline should warn that the default is used)."""
    from . import weights

    builtin = builtin_view_mvn if kind == "view" else builtin_light_mvn
    dim = 6 if kind == "view" else 4
    if name_or_path is None:
        return builtin()
    entries = weights.manifest()
    if name_or_path in entries:
        found = entries[name_or_path].find()
        return builtin() if found is None else load_mvn(found, dim)
    return load_mvn(weights.resolve(name_or_path), dim)


# ----------------------------------------------------------------------------------------------
# Checkpoints


def _has_skips(keys: Iterable[Any], prefix: str = "skips.") -> bool:
    """Whether a netD/netA state dict (or its keys) holds EDDeconv's skips (or, with prefix "image_skip.",
    its image skip)."""
    return any(str(k).startswith(prefix) for k in keys)


def depth_skip_config(data: Mapping[str, Any]) -> dict[str, bool]:
    """The config keys (`depth_skips`, `depth_image_skip`) of the D a loaded checkpoint's netD entry was made by."""
    state = data.get("netD", {})
    return {key: _has_skips(state, prefix) for key, prefix in SKIP_KEYS.items()}


def _check_state(name: str, state: Any, net: nn.Module, path: str | Path) -> None:
    if not isinstance(state, Mapping):
        raise EngineError(f"entry '{name}' is not a state dict", path)
    want = net.state_dict()
    # a file without a kind of skip loads into a net with it, whose convs of that kind are then zeroed (the
    # same function); EDDeconv's encoder skips come all or none
    absent = tuple(p for p in SKIP_PREFIXES if not _has_skips(state, p))
    missing = sorted(k for k in set(want) - set(state) if not k.startswith(absent))
    unexpected = sorted(set(state) - set(want))
    if missing or unexpected:
        skips = "".join(f" / {key}" for key, prefix in SKIP_KEYS.items() if _has_skips(unexpected, prefix))
        raise EngineError(f"'{name}' does not match this network (image size / width{skips}?): "
                          f"{len(missing)} missing keys (e.g. {missing[:2]}), "
                          f"{len(unexpected)} unexpected (e.g. {unexpected[:2]})", path)
    for key, tensor in want.items():
        if key in state and tuple(state[key].shape) != tuple(tensor.shape):
            raise EngineError(f"'{name}.{key}' has shape {tuple(state[key].shape)}, "
                              f"expected {tuple(tensor.shape)} (image size / width mismatch?)", path)


def load_gan2shape_checkpoint(path: str | Path, nets: Mapping[str, nn.Module], strict: bool = True) -> list[str]:
    """Load netD/netA/netV/netL/netEnc entries of an official or engine checkpoint into `nets`.

    Every entry present must match exactly; with strict=True at least one must be present. Returns the
    names loaded (a checkpoint without netD means the ellipsoid prior must be fitted, §1.5).
    """
    data = load_torch(path)
    if not isinstance(data, Mapping):
        raise EngineError("expected a dict of network state dicts (netD, netA, ...)", path)
    present = [n for n in NET_NAMES if n in data and n in nets]
    if strict and not present:
        raise EngineError(f"no network entries found (expected some of {', '.join(NET_NAMES)})", path)
    for name in present:
        _check_state(name, data[name], nets[name], path)
    for name in present:
        net = nets[name]
        net.load_state_dict(data[name], strict=False)  # _check_state allowed only absent skips
        if isinstance(net, EDDeconv):
            net.zero_skips(data[name])
    return present


def save_gan2shape_checkpoint(path: str | Path, nets: Mapping[str, nn.Module],
                              extra: Mapping[str, Any] | None = None) -> None:
    """Write the networks (and e.g. optimizer states) in the official layout, atomically."""
    data = {name: net.state_dict() for name, net in nets.items()}
    data.update(extra or {})
    with atomic_path(path) as tmp:
        torch.save(data, tmp)


def _infer_size(state: Mapping[str, torch.Tensor], encoder: bool = False) -> tuple[int, float]:
    """(image size, width) of a netD/netA state dict (or, with `encoder`, a netV/netL one), from its first
    conv width and its depth."""
    convs = [k for k, v in state.items() if k.startswith("network.") and k.endswith(".weight") and v.dim() == 4]
    nf = state["network.0.weight"].shape[0]
    base, per_extra = (6, 1) if encoder else (16, 3)  # 4-D weights (convs, conv-transposes) at 64², per doubling
    for size in (64, 128, 256):
        if len(convs) == base + per_extra * (int(math.log2(size)) - 6):
            return size, nf / max(4096 // size, 16)
    raise ValueError("unrecognised layout")


def describe_checkpoint(path: str | Path) -> str:
    """Validator for weights kind 'gan2shape': which nets, for which image size; EngineError if invalid."""
    data = load_torch(path)
    if not isinstance(data, Mapping):
        data = {}
    # (image size, width) of the D/A pair and of the V/L pair, each read from the first of them in the file:
    # a preset may make V and L narrower than D and A (`view_light_width`), as the default's pretrain.pth does
    found: dict[bool, tuple[int, float]] = {}
    for encoder, names in ((False, ("netD", "netA")), (True, ("netV", "netL"))):
        probe = next((name for name in names if name in data), None)
        if probe is not None:
            try:
                found[encoder] = _infer_size(data[probe], encoder=encoder)
            except (ValueError, KeyError, AttributeError) as exc:
                raise EngineError(f"{probe} layout not recognised", path) from exc
    if not found:
        raise EngineError("expected a gan2shape checkpoint (dict with netD / netA / netV / netL / netEnc)", path)
    if len({size for size, _ in found.values()}) > 1:
        raise EngineError(f"its nets are for different image sizes ({found[False][0]}² and {found[True][0]}²)", path)
    size, width = found.get(False, found.get(True))
    view_light_width = found.get(True, (size, width))[1]
    kinds = depth_skip_config(data)
    skips, image_skip = kinds["depth_skips"], kinds["depth_image_skip"]
    nets = build_nets(size, width, view_light_width=view_light_width, **kinds)
    names = load_gan2shape_checkpoint(path, nets)
    w = "" if abs(width - 1) < 1e-6 else f", width {width:g}"
    if abs(view_light_width - width) > 1e-6:
        w += f" (V and L {view_light_width:g})"
    kinds = " and ".join(k for k, on in (("skips", skips), ("an image skip", image_skip)) if on)
    return f"gan2shape, {size}², {'/'.join(names)}{w}{f', D with {kinds}' if kinds else ''}"


# ----------------------------------------------------------------------------------------------
# Latent offset through the mapping network (§5.4)


class MappingOffset:
    """Δw = mapping_tail(h + center_h) − mapping_tail(center_h) with the official F1_d off-by-one.

    `generator` follows the generator protocol (engine/gan/protocol.py): `partial_mapping(x, skip,
    depth)` applies mapping modules with index in [skip, depth) (index 0 = PixelNorm, 1..n = linears,
    n = `n_mapping_layers`). center_h = modules [0, n − F1_d) applied to z = 0; the offset re-enters at
    module n − F1_d, so F1_d = 2 re-applies the last three linears and F1_d = n applies PixelNorm and all
    n layers. A generator without a mapping network (n = 0) gets Δw = h. The subtrahend is recomputed
    with the same batch shape, so a zero offset gives Δw = 0 exactly.
    """

    def __init__(self, generator: Any, f1_d: int):
        n = generator.n_mapping_layers
        if n > 0 and not 1 <= f1_d <= n:
            raise EngineError(f"F1_d = {f1_d} needs 1..{n} mapping layers (this generator has {n})")
        self.generator = generator
        self.skip = max(0, n - f1_d)
        self._center: torch.Tensor | None = None

    def center_h(self, like: torch.Tensor) -> torch.Tensor:
        """Hidden activation of z = 0 after modules [0, skip), 1×dim on like's device."""
        if self._center is None or self._center.device != like.device:
            zero = torch.zeros(1, like.shape[-1], device=like.device, dtype=like.dtype)
            with torch.no_grad():
                self._center = self.generator.partial_mapping(zero, 0, self.skip)
        return self._center

    def __call__(self, h: torch.Tensor, h_ref: torch.Tensor | None = None) -> torch.Tensor:
        """Offsets for encoder outputs h (B×dim); `h_ref` (1×dim, E(gan_im)) makes them relative."""
        if h_ref is not None:
            h = h - h_ref
        base = self.center_h(h).expand_as(h)
        tail = self.generator.partial_mapping
        return tail(h + base, self.skip, None) - tail(base, self.skip, None)
