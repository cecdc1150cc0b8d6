"""Reading and writing StyleGAN2 checkpoints in the rosinality layout, safely and strictly.

A checkpoint is a dict with `g_ema` (required), and optionally `d`, `latent_avg`, `g`, plus
whatever rosinality's train.py stores (`args`, optimiser states, `ada_aug_p`). Files written here
add `arch` (a plain dict) so compact models load without flags; official files have none, so
their architecture is inferred from tensor shapes. Every failure is one EngineError line.
"""

from __future__ import annotations

import argparse
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torch import nn

from ..errors import EngineError
from ..io import atomic_path
from .stylegan2 import Discriminator, Generator, StyleGAN2Arch

# Non-tensor objects that rosinality training checkpoints legitimately contain.
SAFE_GLOBALS: list = [argparse.Namespace]


@dataclass
class StyleGAN2Checkpoint:
    """A loaded checkpoint: modules in eval mode on the requested device."""

    arch: StyleGAN2Arch
    generator: Generator
    discriminator: Discriminator | None
    latent_avg: torch.Tensor | None
    official: bool  # True when the file carries no `arch` entry (architecture inferred from shapes)


def _shape(t: torch.Tensor) -> str:
    return "×".join(str(s) for s in t.shape) or "scalar"


def read_checkpoint(path: str | Path) -> dict:
    """torch.load(weights_only=True) with the allow-list; returns the top-level dict."""
    path = Path(path)
    if not path.is_file():
        raise EngineError("checkpoint file does not exist", path)
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pickle-protocol chatter on foreign files
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt, truncated or unsafe files
        raise EngineError(_load_failure(str(exc) or type(exc).__name__), path) from exc
    if not isinstance(data, Mapping) or "g_ema" not in data:
        found = sorted(map(str, data))[:8] if isinstance(data, Mapping) else type(data).__name__
        raise EngineError(f"not a StyleGAN2 checkpoint: expected a dict with 'g_ema', found {found}", path)
    for key in ("g_ema", "d", "g"):
        if key in data and not _is_state_dict(data[key]):
            raise EngineError(f"'{key}' is not a state dict of tensors", path)
    return dict(data)


def _load_failure(text: str) -> str:
    """torch.load's multi-paragraph error → the one line that says what is wrong with the file."""
    unsafe = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if unsafe:
        return (f"checkpoint contains an object a safe load refuses ({unsafe.group(1)}); "
                "only tensors, plain containers and argparse.Namespace are accepted")
    if "zip archive" in text or "central directory" in text:
        return "not a readable torch checkpoint (truncated or corrupt zip archive)"
    detail = text.split("WeightsUnpickler error:", 1)[-1].strip().splitlines()[0][:120]
    return f"not a readable torch checkpoint (truncated, corrupt or another format: {detail})"


def _is_state_dict(obj: object) -> bool:
    return isinstance(obj, Mapping) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _arch_from_record(record: object, path: Path) -> StyleGAN2Arch:
    names = {f.name for f in fields(StyleGAN2Arch)}
    if not isinstance(record, Mapping) or not set(record) <= names or "size" not in record:
        raise EngineError(f"'arch' entry must be a dict with keys from {sorted(names)}, got {record!r}", path)
    try:
        return StyleGAN2Arch(**record)
    except (TypeError, ValueError) as exc:
        raise EngineError(f"invalid 'arch' entry: {exc}", path) from exc


def infer_arch(state: Mapping[str, torch.Tensor], path: str | Path | None = None) -> StyleGAN2Arch:
    """Size, style_dim, n_mlp, channel multiplier and cap of a rosinality generator state dict."""
    required = ("style.1.weight", "input.input", "conv1.conv.weight", "to_rgb1.conv.weight")
    missing = [k for k in required if k not in state]
    if missing:
        sample = ", ".join(sorted(state)[:4])
        raise EngineError(f"'g_ema' is not a rosinality StyleGAN2 generator: no '{missing[0]}' "
                          f"(keys start with: {sample})", path)
    n_mlp = sum(1 for i in range(1, 64) if f"style.{i}.weight" in state)
    n_blocks = sum(1 for k in range(16) if f"to_rgbs.{k}.conv.weight" in state)
    size = 2 ** (n_blocks + 2)
    try:
        style_dim = state["style.1.weight"].shape[1]
        table = {4: state["input.input"].shape[1]}
        for k in range(n_blocks):
            table[2 ** (k + 3)] = state[f"convs.{2 * k}.conv.weight"].shape[1]
    except KeyError as exc:
        raise EngineError(f"'g_ema' is not a rosinality StyleGAN2 generator: no {exc}", path) from exc
    except IndexError as exc:
        raise EngineError("'g_ema' is not a rosinality StyleGAN2 generator: its tensor shapes do not fit "
                          "(e.g. input.input should be 1×C×4×4)", path) from exc
    cap = max(table.values())
    for cm in (1, 2, 4, 8):
        try:
            arch = StyleGAN2Arch(size=size, style_dim=style_dim, n_mlp=n_mlp, channel_multiplier=cm,
                                 channel_max=cap)
        except ValueError as exc:
            raise EngineError(f"unsupported generator: {exc}", path) from exc
        if all(arch.channels(r) == c for r, c in table.items()):
            return arch
    raise EngineError(f"generator channel layout {table} is not a StyleGAN2 channel table", path)


def check_state_dict(module: nn.Module, state: Mapping[str, torch.Tensor], what: str,
                     path: str | Path | None = None) -> None:
    """Strict key and shape coverage; the error names the first problem, its shapes and the count."""
    expected = module.state_dict()
    problems = []
    for key, ref in expected.items():
        if key not in state:
            problems.append(f"missing '{key}' (expected {_shape(ref)})")
        elif state[key].shape != ref.shape:
            problems.append(f"'{key}' is {_shape(state[key])} in the file, expected {_shape(ref)}")
    problems += [f"unexpected '{k}' ({_shape(state[k])})" for k in state if k not in expected]
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise EngineError(f"'{what}' does not match the {_arch_label(module)}: {problems[0]}{more}", path)


def _arch_label(module: nn.Module) -> str:
    a: StyleGAN2Arch = module.arch  # type: ignore[assignment]
    cap = f", channel cap {a.channel_max}" if a.channel_max != 512 else ""
    return (f"{type(module).__name__.lower()} {a.size}² cm{a.channel_multiplier}{cap} "
            f"(style {a.style_dim}×{a.n_mlp})")


def _build(cls: type, arch: StyleGAN2Arch, state: Mapping[str, torch.Tensor], what: str, path: Path,
           device: torch.device | str) -> nn.Module:
    with torch.device("meta"):
        module = cls(arch)
    check_state_dict(module, state, what, path)
    module.load_state_dict({k: v.float() for k, v in state.items()}, assign=True)
    return module.to(device).eval().requires_grad_(False)


def resolve_arch(data: Mapping, path: Path, size: int | None = None,
                 channel_multiplier: int | None = None) -> tuple[StyleGAN2Arch, bool]:
    """Architecture of a read checkpoint (recorded or inferred), checked against what the caller expects."""
    official = "arch" not in data
    arch = infer_arch(data["g_ema"], path) if official else _arch_from_record(data["arch"], path)
    if size is not None and arch.size != size:
        raise EngineError(f"checkpoint holds a {arch.size}² generator, expected {size}²", path)
    if channel_multiplier is not None and arch.channel_multiplier != channel_multiplier and arch.size > 32:
        raise EngineError(f"checkpoint has channel multiplier {arch.channel_multiplier}, "
                          f"expected {channel_multiplier}", path)
    return arch, official


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu", size: int | None = None,
                    channel_multiplier: int | None = None, discriminator: bool = True) -> StyleGAN2Checkpoint:
    """Load g_ema (+ d if present and wanted, + latent_avg) strictly; frozen, eval mode, float32."""
    path = Path(path)
    data = read_checkpoint(path)
    arch, official = resolve_arch(data, path, size, channel_multiplier)
    gen = _build(Generator, arch, data["g_ema"], "g_ema", path, device)
    disc = _build(Discriminator, arch, data["d"], "d", path, device) if discriminator and "d" in data else None
    latent_avg = data.get("latent_avg")
    if latent_avg is not None:
        if not isinstance(latent_avg, torch.Tensor) or latent_avg.numel() != arch.style_dim:
            raise EngineError(f"'latent_avg' must be a tensor of {arch.style_dim} values", path)
        latent_avg = latent_avg.float().reshape(1, arch.style_dim).to(device)
    return StyleGAN2Checkpoint(arch, gen, disc, latent_avg, official)


def save_checkpoint(path: str | Path, generator: Generator, discriminator: Discriminator | None = None,
                    latent_avg: torch.Tensor | None = None, extra: Mapping | None = None) -> None:
    """Write {'g_ema', ['d'], ['latent_avg'], 'arch', **extra} atomically (CPU tensors).

    `extra` may hold more weights-only-safe entries (e.g. 'g', optimiser states, a step count).
    """
    data: dict = dict(extra or {})
    data["g_ema"] = {k: v.detach().cpu() for k, v in generator.state_dict().items()}
    if discriminator is not None:
        data["d"] = {k: v.detach().cpu() for k, v in discriminator.state_dict().items()}
    if latent_avg is not None:
        data["latent_avg"] = latent_avg.detach().cpu().reshape(-1)
    data["arch"] = generator.arch.to_dict()
    with atomic_path(path) as tmp:
        torch.save(data, tmp)


def describe_checkpoint(path: str | Path, size: int | None = None, channel_multiplier: int | None = None) -> str:
    """One-line description for `engine info`; raises EngineError when the file would not load
    (or, when given, does not have the expected size / channel multiplier)."""
    path = Path(path)
    data = read_checkpoint(path)
    arch, official = resolve_arch(data, path, size, channel_multiplier)
    with torch.device("meta"):
        gen = Generator(arch)
        check_state_dict(gen, data["g_ema"], "g_ema", path)
        if "d" in data:
            check_state_dict(Discriminator(arch), data["d"], "d", path)
    params = sum(p.numel() for p in gen.parameters()) / 1e6
    origin = "official layout" if official else "arch recorded"
    disc = "with discriminator" if "d" in data else "no discriminator"
    return f"stylegan2 {_arch_label(gen).removeprefix('generator ')}, {params:.1f} M params, {disc}, {origin}"
