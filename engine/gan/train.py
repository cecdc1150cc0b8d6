"""Training the compact StyleGAN2 of the default model on the synthetic category (CPU-friendly).

Non-saturating logistic loss, lazy R1 on reals, style mixing, x-flip augmentation and an EMA
generator whose half-life ramps up with the images seen. Everything random comes from torch's
global generator, whose state is checkpointed: a resumed run continues exactly as an uninterrupted
one would. Two files are written:

- the full state (G, D, G_ema, both Adam states, counters, RNG) in `state_dir/state.pt`, outside the
  repository, every few minutes and on SIGTERM/SIGINT;
- the export: G_ema + D in the rosinality layout with `arch` (engine.gan.checkpoint), small enough
  to ship in weights/default/. If the state is lost, training warm-starts from the export.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..device import threads_for_load
from ..errors import EngineError
from ..io import atomic_path, load_torch
from .checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from .stylegan2 import Discriminator, Generator, StyleGAN2Arch

STATE_FILE = "state.pt"


@dataclass(frozen=True)
class TrainConfig:
    """Architecture and optimisation settings (stored in every checkpoint; a resume must match)."""

    size: int = 64
    channel_max: int = 64
    style_dim: int = 512
    n_mlp: int = 8
    batch: int = 16
    lr: float = 0.002
    r1_gamma: float = 0.5
    d_reg_every: int = 16
    mixing_prob: float = 0.9
    ema_half_life_images: int = 10_000
    ema_rampup: float = 0.05  # half-life ≤ rampup · images seen, so early EMA samples are useful
    xflip: bool = True

    def arch(self) -> StyleGAN2Arch:
        return StyleGAN2Arch(size=self.size, style_dim=self.style_dim, n_mlp=self.n_mlp,
                             channel_multiplier=1, channel_max=self.channel_max)


@dataclass
class TrainState:
    """Networks, optimisers and counters of one run."""

    cfg: TrainConfig
    g: Generator
    d: Discriminator
    g_ema: Generator
    g_opt: torch.optim.Adam
    d_opt: torch.optim.Adam
    step: int = 0
    images_seen: int = 0
    seconds: float = 0.0  # training wall time summed over all sessions

    @classmethod
    def fresh(cls, cfg: TrainConfig, seed: int = 0) -> TrainState:
        torch.manual_seed(seed)
        arch = cfg.arch()
        g, d = Generator(arch), Discriminator(arch)
        return cls.from_networks(cfg, g, d, copy.deepcopy(g))

    @classmethod
    def from_networks(cls, cfg: TrainConfig, g: Generator, d: Discriminator, g_ema: Generator) -> TrainState:
        c = cfg.d_reg_every / (cfg.d_reg_every + 1)  # lazy-regularisation correction of Adam's settings
        g_opt = torch.optim.Adam(g.parameters(), lr=cfg.lr, betas=(0.0, 0.99))
        d_opt = torch.optim.Adam(d.parameters(), lr=cfg.lr * c, betas=(0.0, 0.99**c))
        g_ema.eval().requires_grad_(False)
        return cls(cfg, g, d, g_ema, g_opt, d_opt)

    def to_dict(self) -> dict:
        return {
            "config": dataclasses.asdict(self.cfg),
            "g": self.g.state_dict(), "d": self.d.state_dict(), "g_ema": self.g_ema.state_dict(),
            "g_optim": self.g_opt.state_dict(), "d_optim": self.d_opt.state_dict(),
            "step": self.step, "images_seen": self.images_seen, "seconds": self.seconds,
            "rng": torch.get_rng_state(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> TrainState:
        state = cls.fresh(TrainConfig(**data["config"]))
        state.g.load_state_dict(data["g"])
        state.d.load_state_dict(data["d"])
        state.g_ema.load_state_dict(data["g_ema"])
        state.g_opt.load_state_dict(data["g_optim"])
        state.d_opt.load_state_dict(data["d_optim"])
        state.step, state.images_seen, state.seconds = data["step"], data["images_seen"], data["seconds"]
        torch.set_rng_state(data["rng"])
        return state


def save_state(state: TrainState, state_dir: Path) -> Path:
    path = Path(state_dir) / STATE_FILE
    with atomic_path(path) as tmp:
        torch.save(state.to_dict(), tmp)
    return path


def export(state: TrainState, path: Path) -> None:
    """G_ema + D (rosinality layout, with arch) and the training record, for weights/default/."""
    with torch.no_grad():
        latent_avg = state.g_ema.mean_latent(4096, torch.Generator().manual_seed(0))
    record = {"config": dataclasses.asdict(state.cfg), "step": state.step, "images_seen": state.images_seen,
              "seconds": round(state.seconds, 1)}
    save_checkpoint(path, state.g_ema, state.d, latent_avg, extra={"train": record})


def load_or_start(cfg: TrainConfig, state_dir: Path, warm_start: Path | None, seed: int = 0
                  ) -> tuple[TrainState, str]:
    """Resume from state_dir, else warm-start from an export, else start fresh; says which."""
    path = Path(state_dir) / STATE_FILE
    if path.is_file():
        data = load_torch(path, "training state", "move it away to warm-start from the export")
        if data["config"] != dataclasses.asdict(cfg):
            raise EngineError(f"the saved run used another config {data['config']}; pass matching options "
                              "or another --state-dir", path)
        return TrainState.from_dict(data), "resumed"
    if warm_start is not None and Path(warm_start).is_file():
        record = read_checkpoint(warm_start).get("train", {})
        if record.get("config") != dataclasses.asdict(cfg):
            raise EngineError("the exported model was trained with another config; pass matching options",
                              warm_start)
        ckpt = load_checkpoint(warm_start, discriminator=True)
        if ckpt.discriminator is None:
            raise EngineError("the export has no discriminator 'd': cannot continue training from it", warm_start)
        g = copy.deepcopy(ckpt.generator).train().requires_grad_(True)
        state = TrainState.from_networks(cfg, g, ckpt.discriminator.train().requires_grad_(True),
                                         ckpt.generator)
        state.step, state.images_seen = record["step"], record["images_seen"]
        state.seconds = record["seconds"]
        torch.manual_seed(seed + state.step)
        return state, "warm-started from the export (optimiser state reset)"
    return TrainState.fresh(cfg, seed), "started"


class RealImages:
    """The training images in memory (uint8 N×H×W×3, not copied); batches use torch's global RNG."""

    def __init__(self, rgb_nhwc: np.ndarray, xflip: bool):
        self.images = torch.from_numpy(rgb_nhwc)
        self.xflip = xflip

    def batch(self, n: int) -> torch.Tensor:
        """n images as B×3×H×W floats in [-1, 1], each flipped left-right with probability 1/2."""
        idx = torch.randint(len(self.images), (n,))
        x = self.images[idx].permute(0, 3, 1, 2).float() / 127.5 - 1
        if self.xflip:
            flip = torch.rand(n) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        return x


def _latents(g: Generator, n: int, mixing_prob: float) -> torch.Tensor:
    """W (B×dim) or, with probability mixing_prob, a style-mixed W+ (B×n_latent×dim)."""
    z = torch.randn(2, n, g.style_dim)
    w1 = g.mapping(z[0])
    if torch.rand(()) < mixing_prob:
        crossover = int(torch.randint(1, g.n_latent, ()))
        return g.mix_latents(w1, g.mapping(z[1]), crossover)
    return w1


def train_step(state: TrainState, reals: RealImages) -> dict[str, float]:
    """One D step (+ lazy R1) and one G step, then the EMA update."""
    cfg, g, d = state.cfg, state.g, state.d
    real = reals.batch(cfg.batch)
    with torch.no_grad():
        fake = g(_latents(g, cfg.batch, cfg.mixing_prob), noise="random")
    d_loss = F.softplus(d(fake)).mean() + F.softplus(-d(real)).mean()
    state.d_opt.zero_grad(set_to_none=True)
    d_loss.backward()
    state.d_opt.step()
    logs = {"d_loss": d_loss.item()}
    if state.step % cfg.d_reg_every == 0:
        real = real.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(d(real).sum(), real, create_graph=True)
        r1 = grad.square().sum((1, 2, 3)).mean()
        state.d_opt.zero_grad(set_to_none=True)
        (cfg.r1_gamma / 2 * r1 * cfg.d_reg_every).backward()
        state.d_opt.step()
        logs["r1"] = r1.item()
    d.requires_grad_(False)
    g_loss = F.softplus(-d(g(_latents(g, cfg.batch, cfg.mixing_prob), noise="random"))).mean()
    state.g_opt.zero_grad(set_to_none=True)
    g_loss.backward()
    state.g_opt.step()
    d.requires_grad_(True)
    logs["g_loss"] = g_loss.item()
    state.step += 1
    state.images_seen += cfg.batch
    half_life = min(cfg.ema_half_life_images, cfg.ema_rampup * state.images_seen)
    beta = 0.5 ** (cfg.batch / max(half_life, 1e-8))
    with torch.no_grad():
        for p_ema, p in zip(state.g_ema.parameters(), g.parameters(), strict=True):
            p_ema.lerp_(p, 1 - beta)
    return logs


@torch.no_grad()
def sample_grid(g: Generator, path: Path, rows: int = 8, seed: int = 0) -> None:
    """A rows×rows PNG of G(z) for fixed z (seeded), stored noise, clamped to [-1, 1]."""
    z = torch.randn(rows * rows, g.style_dim, generator=torch.Generator().manual_seed(seed))
    img = g(g.mapping(z)).clamp(-1, 1)
    s = img.shape[-1]
    grid = ((img + 1) * 127.5).round().to(torch.uint8).view(rows, rows, 3, s, s).permute(0, 3, 1, 4, 2)
    with atomic_path(path) as tmp:
        Image.fromarray(grid.reshape(rows * s, rows * s, 3).numpy()).save(tmp, format="PNG")


class _StopFlag:
    """Set by SIGTERM/SIGINT so the loop can save before exiting."""

    def __init__(self) -> None:
        self.stop = False

    def __call__(self, signum: int, frame: object) -> None:
        self.stop = True


def train(state: TrainState, reals: RealImages, state_dir: Path, export_path: Path | None, *,
          max_images: int, checkpoint_minutes: float = 5.0, on_step: Callable[[TrainState, dict], None] | None = None,
          handle_signals: bool = False, adapt_threads_to: int | None = None) -> TrainState:
    """Train until `max_images` images have been shown (or a stop signal); checkpoint and export regularly.

    adapt_threads_to: re-choose the thread count (≤ this many) from the machine's load every 50 steps.
    """
    state_dir = Path(state_dir)
    flag = _StopFlag()
    previous = {}
    if handle_signals:
        previous = {sig: signal.signal(sig, flag) for sig in (signal.SIGTERM, signal.SIGINT)}
    state.g.train()
    state.d.train()
    last_save = time.monotonic()
    logs: dict = {}
    steps_here = 0

    def checkpoint() -> None:
        save_state(state, state_dir)
        if export_path is not None:
            export(state, export_path)
        sample_grid(state.g_ema, state_dir / "samples" / f"images-{state.images_seen:09d}.png")
        with open(state_dir / "log.jsonl", "a") as fh:
            fh.write(json.dumps({"step": state.step, "images_seen": state.images_seen,
                                 "seconds": round(state.seconds, 1), "time": time.time(),
                                 "threads": torch.get_num_threads(), **logs}) + "\n")

    try:
        while state.images_seen < max_images and not flag.stop:
            if adapt_threads_to and steps_here % 50 == 0:
                torch.set_num_threads(threads_for_load(adapt_threads_to, own_load=1.0))
            steps_here += 1
            t0 = time.monotonic()
            logs = train_step(state, reals)
            state.seconds += time.monotonic() - t0
            if on_step:
                on_step(state, logs)
            if time.monotonic() - last_save > checkpoint_minutes * 60:
                checkpoint()
                last_save = time.monotonic()
        checkpoint()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return state


def images_per_second(cfg: TrainConfig, steps: int = 6, warmup: int = 2) -> float:
    """Measured training throughput on random data (used by the bench and the model card)."""
    torch.manual_seed(0)
    state = TrainState.fresh(cfg)
    reals = RealImages(np.random.default_rng(0).integers(0, 256, (64, cfg.size, cfg.size, 3), dtype=np.uint8),
                       cfg.xflip)
    for _ in range(warmup):
        train_step(state, reals)
    t0 = time.perf_counter()
    for _ in range(steps):
        train_step(state, reals)
    return steps * cfg.batch / (time.perf_counter() - t0)

