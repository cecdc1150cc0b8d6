"""One reconstruction from files to a bundle: inputs → latent → model → schedule → bundle (+ export).

Used by `python -m engine reconstruct` and by tests and benchmarks (no argparse here).
"""

from __future__ import annotations

import functools
import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__, bundle, inputs, losses, nets, prior, weights
from ..batch.distributed import Ranks, agree, all_gather
from ..batch.group import assert_same_weights, average_gradients
from ..batch.items import shard
from ..batch.rank_state import RankStates
from ..config import Config, Phase, config_to_dict, crop_fraction, crop_reference
from ..device import select_device
from ..errors import EngineError
from ..export import ExportOptions, export_bundle
from ..gan.protocol import load_generator
from ..io import write_json
from ..progress import Progress
from . import state as state_io
from .model import Model, Target
from .previews import stage_previews
from .result import final_outputs, light_json, view_json, write_maps, write_previews
from .trainer import ITER_COST, GradSync, Trainer, phase_cost, plan


@dataclass
class Request:
    """What to reconstruct and where to put it."""

    image: Path
    out: Path
    cfg: Config
    latent: Path | None = None
    mask: Path | None = None
    depth_gt: Path | None = None
    weights: str | None = None  # overrides cfg.gan_ckpt
    resume: bool = False
    export: bool = True
    on_phase_end: Any = None  # Trainer hook (tests interrupt runs with it)
    grad_sync: Any = None  # Trainer hook between backward and step (batch's shared-weights group mode)
    seed_offset: int = 0  # added to the training seed (not the init): group ranks draw different samples
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class Frozen:
    """The frozen parts of a run: generator, perceptual distance, view/light distributions."""

    generator: Any
    gan_path: Path
    perceptual: torch.nn.Module
    view_mvn: nets.Mvn
    light_mvn: nets.Mvn


@dataclass
class _LoadedFrozen:
    """The frozen parts a process loaded last, with what determined them (see `load_frozen`)."""

    key: tuple[Any, ...]
    frozen: Frozen
    warnings: list[str]
    rng_before: torch.Tensor
    rng_after: torch.Tensor


_last_frozen: _LoadedFrozen | None = None


def _check_discriminator(cfg: Config, frozen_generator: Any, gan_path: Path) -> None:
    if cfg.step2_feature_loss == "discriminator" and not frozen_generator.has_discriminator:
        raise EngineError("the step-2 loss needs the GAN's discriminator but the checkpoint has no 'd'; "
                          "use --set step2_feature_loss=\"perceptual\"", gan_path)


def load_frozen(cfg: Config, device: torch.device, progress: Progress, weights_name: str | None = None) -> Frozen:
    """Generator, perceptual net and view/light distributions for `cfg` on `device`.

    A process keeps the last set it loaded and reuses it while the generator file (path, size, mtime),
    device, perceptual choice and MVN names are the same: a batch worker reconstructs image after image
    without reading the models again. The parts are frozen (no gradients, eval mode), so sharing them
    between runs is safe. Building the perceptual net draws from the global RNG before its weights are
    loaded, and the nets are initialised after it, so a reuse also restores the RNG state a load would
    have left (it is only reused from the same RNG state): outputs are the same as with a fresh load.
    The load's warnings are repeated on every reuse, since each run reports its own.
    """
    global _last_frozen
    gan_path = weights.resolve(weights_name or cfg.gan_ckpt)
    stat = gan_path.stat()
    key = (str(gan_path.resolve()), stat.st_size, stat.st_mtime_ns, cfg.gan_size, str(device), cfg.perceptual,
           cfg.view_mvn_path, cfg.light_mvn_path)
    rng = torch.get_rng_state()
    last = _last_frozen
    if last is not None and last.key == key and torch.equal(last.rng_before, rng):
        _check_discriminator(cfg, last.frozen.generator, gan_path)
        for message in last.warnings:
            progress.warning(message)
        torch.set_rng_state(last.rng_after)
        return last.frozen
    _last_frozen = last = None  # let the old models go before loading new ones
    notes: list[str] = []

    def warn(message: str) -> None:
        notes.append(message)
        progress.warning(message)

    generator = load_generator(gan_path, device, size=cfg.gan_size)
    _check_discriminator(cfg, generator, gan_path)
    perceptual = losses.build_perceptual(cfg.perceptual, warn=warn, device=device)
    view_mvn, light_mvn = nets.resolve_mvn(cfg.view_mvn_path, "view"), nets.resolve_mvn(cfg.light_mvn_path, "light")
    for name, mvn in ((cfg.view_mvn_path, view_mvn), (cfg.light_mvn_path, light_mvn)):
        if name is not None and mvn.source.startswith("built-in"):
            warn(f"'{name}' not found; using the {mvn.source}")
    frozen = Frozen(generator, gan_path, perceptual, view_mvn, light_mvn)
    _last_frozen = _LoadedFrozen(key, frozen, notes, rng, torch.get_rng_state())
    return frozen


def forget_frozen() -> None:
    """Drop the frozen parts `load_frozen` keeps (frees their memory; the next run loads them again)."""
    global _last_frozen
    _last_frozen = None


def build_model(cfg: Config, frozen: Frozen, device: torch.device) -> tuple[Model, bool]:
    """The model with pretrained nets loaded if the config names them; returns (model, need_prior)."""
    model = Model(cfg, frozen.generator, frozen.perceptual, frozen.view_mvn.mean, frozen.light_mvn.mean,
                  frozen.view_mvn.distribution()).to(device)
    loaded: list[str] = []
    if cfg.pretrain is not None:
        loaded = nets.load_gan2shape_checkpoint(weights.resolve(cfg.pretrain), model.nets)
    return model, "netD" not in loaded


def read_depth_gt(path: Path, size: int, frac: float | None) -> torch.Tensor:
    """Ground-truth depth (.npy of depths, or an image in the synface convention 0.9 + 0.2·(1 − p), §11.1)
    through the input image's crop chain."""
    if path.suffix.lower() == ".npy":
        try:
            depth = torch.from_numpy(np.load(path).astype(np.float32))
        except (OSError, ValueError) as exc:
            raise EngineError(f"cannot read ground-truth depth ({exc})", path) from exc
        if depth.dim() != 2:
            raise EngineError(f"ground-truth depth must be H×W, got {tuple(depth.shape)}", path)
        depth = depth[None, None]
    else:
        p = inputs.read_image(path).rgb[:, :1] / 2 + 0.5
        depth = 0.9 + 0.2 * (1 - p)
    return inputs.image_to_model(depth, size, frac, mode="area")[:, 0]


@dataclass
class Inputs:
    """The user's files read and checked (before any heavy loading, so bad inputs fail fast)."""

    image: torch.Tensor  # 1×3×S×S
    mask: torch.Tensor  # 1×1×S×S
    full: np.ndarray  # the photo after the same crops, full resolution, H×W×3 in [0, 1]
    depth_gt: torch.Tensor | None
    info: dict[str, Any]


def read_inputs(req: Request, progress: Progress) -> Inputs:
    cfg = req.cfg
    size, frac = cfg.image_size, crop_fraction(cfg)
    photo = inputs.read_image(req.image, cfg.max_input_side, warn=progress.warning)
    image = inputs.image_to_model(photo.rgb, size, frac)
    mask, mask_source = prior.resolve_mask(photo, req.mask, cfg.mask_fallback, progress.warning, cfg.max_input_side)
    mask = inputs.image_to_model(mask, size, frac, mode="area")
    prior.check_mask(mask, cfg.prior_mask_threshold, "object mask at the networks' resolution")
    depth_gt = read_depth_gt(req.depth_gt, size, frac) if req.depth_gt is not None else None
    side = min(photo.rgb.shape[-2:])
    full = inputs.image_to_model(photo.rgb, side if frac is None else max(1, round(side * frac)), frac)
    info = {"image": str(Path(req.image).resolve()), "sha256": bundle.sha256_file(req.image),
            "original_size": [photo.original_size[1], photo.original_size[0]], "downscaled": photo.downscaled,
            "latent": None if req.latent is None else str(Path(req.latent).resolve()),
            "mask": None if req.mask is None else str(Path(req.mask).resolve()), "mask_source": mask_source,
            "depth_gt": None if req.depth_gt is None else str(Path(req.depth_gt).resolve())}
    return Inputs(image, mask, (full[0].permute(1, 2, 0).numpy() / 2 + 0.5).clip(0, 1), depth_gt, info)


def make_target(req: Request, inp: Inputs, frozen: Frozen, device: torch.device, progress: Progress,
                latent_from_state: torch.Tensor | None) -> Target:
    """The target at size S with its latent: from the saved state, the latent file or the projector."""
    cfg, gen = req.cfg, frozen.generator
    image, mask = inp.image.to(device), inp.mask.to(device)
    if latent_from_state is not None:  # the saved run's latent (from its file or its projection)
        latent, source = latent_from_state.to(device), "file" if req.latent is not None else "projector"
    elif req.latent is not None:
        latent, source = inputs.load_latent(req.latent, gen.latent_dim).to(device), "file"
    else:
        from .. import projector

        t0 = time.perf_counter()
        unit = ITER_COST["project"]

        def tick(i: int, total: int, _loss: float) -> None:
            progress.advance(unit, stage=0, step="project", iter=i, total=total)

        latent = projector.project(gen, image, cfg.projector, frozen.perceptual, mask, cfg.crop, crop_reference(cfg),
                                   progress=tick, seed=cfg.seed).latent.to(device)
        req.timings["projector_s"] = round(time.perf_counter() - t0, 3)
        source = "projector"
    inp.info.update(latent_source=source, resumed=latent_from_state is not None)
    with torch.no_grad():
        gan_image = inputs.gan_to_model(gen.synthesize(latent), cfg.image_size, cfg.crop, crop_reference(cfg))
    depth_gt = None if inp.depth_gt is None else inp.depth_gt.to(device)
    return Target(Path(req.image).stem, image, latent, gan_image, mask, depth_gt)


def prior_depth(target: Target, cfg: Config) -> torch.Tensor:
    """The ellipsoid of the target's object mask (§4.2), 1×S×S on the target's device."""
    return prior.ellipsoid_for(target.mask, cfg)[None].to(target.image.device)


def run_fingerprint(req: Request, inp: Inputs) -> str:
    """What a saved state must match to be resumed: the input files (the image's hash is already in `inp`)."""
    hashes = [inp.info["sha256"], *(bundle.sha256_file(p) if p is not None else None for p in (req.latent, req.mask))]
    return state_io.fingerprint(hashes, config_to_dict(req.cfg), req.weights)


def start_run(cfg: Config, reqs: list[Request], saved: dict | None, progress: Progress,
              weights_name: str | None, **start_info: Any) -> tuple[torch.device, Frozen, Model, bool]:
    """Device, frozen parts and the model; starts `progress` with the cost of inversions plus the schedule
    (`start_info`: extra fields of the start event)."""
    device = select_device(cfg.device)
    torch.manual_seed(cfg.seed)
    frozen = load_frozen(cfg, device, progress, weights_name)
    model, need_prior = build_model(cfg, frozen, device)
    phases = plan(cfg, len(reqs), need_prior)
    projections = 0 if saved is not None else sum(r.latent is None for r in reqs)
    total = sum(phase_cost(p, cfg) for p in phases) + projections * cfg.projector.iters * ITER_COST["project"]
    progress.start(total, phases=len(phases), images=len(reqs), resumed=saved is not None, **start_info)
    return device, frozen, model, need_prior


def reconstruct(req: Request, progress: Progress) -> Path:
    """Run the whole method for one image and write the bundle at req.out; returns its path."""
    t_start = time.perf_counter()
    cfg, out = req.cfg, Path(req.out)
    state_path = state_io.state_path_for(out)
    inp = read_inputs(req, progress)
    fingerprint = run_fingerprint(req, inp)
    saved = state_io.load_state(state_path, fingerprint) if req.resume and state_path.exists() else None
    device, frozen, model, need_prior = start_run(cfg, [req], saved, progress, req.weights)
    target = make_target(req, inp, frozen, device, progress, None if saved is None else saved["latents"][0])
    trainer = Trainer(model, [target], cfg, seed=cfg.seed + req.seed_offset, need_prior=need_prior,
                      prior_fn=lambda t: prior_depth(t, cfg), progress=progress,
                      state_path=state_path, fingerprint=fingerprint, preview_fn=stage_previews,
                      on_phase_end=req.on_phase_end, grad_sync=req.grad_sync)
    t0 = time.perf_counter()
    log = trainer.run(saved)
    train_s = time.perf_counter() - t0
    final = final_outputs(model, target)
    timings = {**req.timings, "train_s": round(train_s, 3)}
    for p in log.phases:
        key = f"{p['step']}_s"
        timings[key] = round(timings.get(key, 0.0) + p["seconds"], 3)
    metrics = {"loss": {f"stage{p['stage']}_{p['step']}": p["last_loss"] for p in log.phases
                        if p["last_loss"] is not None}, **log.metrics}
    with bundle.open_bundle(out) as writer:
        write_maps(writer, final, target)
        writer.save_png("input_full", "input_full.png", inp.full)
        write_previews(writer, log.previews)
        result = {
            "input": inp.info, "preset": cfg.preset, "config": config_to_dict(cfg),
            "image_size": cfg.image_size,
            "camera": {"fov_deg": cfg.fov, "rot_center_depth": cfg.rot_center_depth, "min_depth": cfg.min_depth,
                       "max_depth": cfg.max_depth},
            "view": view_json(final), "light": light_json(final),
            "perceptual": getattr(frozen.perceptual, "backbone", type(frozen.perceptual).__name__),
            "generator": {"path": str(frozen.gan_path), "latent_kind": frozen.generator.latent_kind,
                          "image_size": frozen.generator.image_size},
            "view_mvn": frozen.view_mvn.source, "light_mvn": frozen.light_mvn.source,
            "metrics": metrics, "training": {"phases": log.phases, "seed": cfg.seed, "device": str(device)},
            "timings": timings, "versions": versions(),
        }
        writer.finish(result)
        if req.export:  # inside the temporary bundle: a failed export leaves no bundle (the state allows --resume)
            t0 = time.perf_counter()
            export_bundle(writer.root, ExportOptions(formats=("glb", "obj")))
            timings["export_s"] = round(time.perf_counter() - t0, 3)
        timings["total_s"] = round(time.perf_counter() - t_start, 3)
        data = bundle.read(writer.root)
        data["timings"] = timings
        write_json(writer.root / bundle.RESULT_FILE, data)
    state_path.unlink(missing_ok=True)
    return out


def pretrain(reqs: list[Request], out: Path, progress: Progress, resume: bool = False, on_phase_end: Any = None,
             ranks: Ranks | None = None, grad_sync: GradSync | None = None) -> dict[str, Any]:
    """Joint pre-training (§1.7): one shared set of nets over all images; writes a gan2shape checkpoint
    (netD, netA, netV, netL, netEnc + a `meta` record) usable as a preset's `pretrain`.

    In a torchrun job (`ranks` distributed) rank r trains on its shard of `reqs` (images r, r + W…) from
    the same initial nets (seeded by the config), with its own pseudo-sample seed (seed + r); `grad_sync`
    (default: the mean over the ranks, as DDP) runs between every backward and optimiser step, so the nets
    stay identical, which is checked at the end. Rank 0 alone writes the checkpoint. Every rank keeps its
    own resumable state (`RankStates`). A failure before training (bad image, weights…) stops every rank
    with an error naming the rank that failed.
    """
    ranks = ranks or Ranks()
    cfg, out = reqs[0].cfg, Path(out)
    if len(reqs) < ranks.world_size:
        raise EngineError(f"{ranks.world_size} ranks need at least as many images, got {len(reqs)}")
    largest = len(shard(reqs, 0, ranks.world_size))  # the same check on every rank
    if largest > 1 and min(cfg.collect_iters, cfg.collect_iters2 or cfg.collect_iters) < largest:
        raise EngineError(f"collect_iters must be at least the number of images per process ({largest}): every "
                          "image needs at least one bank batch per stage")
    mine = shard(reqs, ranks.rank, ranks.world_size)
    states = RankStates(out, ranks) if ranks.distributed else None
    state_path = states.latest if states is not None else state_io.state_path_for(out)

    def read_mine() -> tuple[list[Inputs], str]:
        inps = [read_inputs(r, progress) for r in mine]
        parts = [run_fingerprint(r, i) for r, i in zip(mine, inps, strict=True)]
        layout = [{"rank": ranks.rank, "world_size": ranks.world_size}] if ranks.distributed else []
        return inps, state_io.fingerprint(parts, *layout)

    inps, fingerprint = agree(ranks, read_mine, "reading its images")
    if states is None:
        saved = state_io.load_state(state_path, fingerprint) if resume and state_path.exists() else None
    elif resume:
        saved = states.load(fingerprint)
    else:
        saved = None
        states.remove()

    def build() -> tuple[torch.device, Frozen, Model, bool, list[Target]]:
        layout = {"rank": ranks.rank, "world_size": ranks.world_size, "all_images": len(reqs)}
        device, frozen, model, need_prior = start_run(cfg, mine, saved, progress, reqs[0].weights,
                                                      **(layout if ranks.distributed else {}))
        targets = [make_target(r, inp, frozen, device, progress, None if saved is None else saved["latents"][i])
                   for i, (r, inp) in enumerate(zip(mine, inps, strict=True))]
        return device, frozen, model, need_prior, targets

    device, frozen, model, need_prior, targets = agree(ranks, build, "loading the models and inverting its images")
    if grad_sync is None and ranks.distributed:  # NCCL for CUDA tensors; the gloo group for CPU tensors
        grad_sync = functools.partial(average_gradients, group=None if device.type == "cuda" else ranks.group)
    trainer = Trainer(model, targets, cfg, seed=cfg.seed + ranks.rank, need_prior=need_prior,
                      prior_fn=lambda t: prior_depth(t, cfg), progress=progress, state_path=state_path,
                      fingerprint=fingerprint, on_phase_end=_committing(states, on_phase_end), grad_sync=grad_sync)
    log = trainer.run(saved)
    meta = {"images": [inp.info["image"] for inp in inps], "preset": cfg.preset, "engine": __version__,
            "config": json.dumps(config_to_dict(cfg), sort_keys=True), "image_size": cfg.image_size,
            "net_width": cfg.net_width, "perceptual": getattr(frozen.perceptual, "backbone", "")}
    if ranks.distributed:
        digest = assert_same_weights(model.nets, ranks)
        shards = all_gather(meta["images"], ranks)
        meta["images"] = [shards[i % ranks.world_size][i // ranks.world_size] for i in range(len(reqs))]
        meta["distributed"] = {"world_size": ranks.world_size, "shards": shards, "nets_sha256": digest}

    def write() -> None:
        if ranks.is_main:
            nets.save_gan2shape_checkpoint(out, model.nets, extra={"meta": meta})

    agree(ranks, write, "writing the checkpoint")
    if states is None:
        state_path.unlink(missing_ok=True)
    else:
        states.remove()
    summary = {"checkpoint": str(out.resolve()), "images": len(reqs), "phases": log.phases}
    return summary if not ranks.distributed else {**summary, "world_size": ranks.world_size}


def _committing(states: RankStates | None, on_phase_end: Any) -> Any:
    """The Trainer's phase-end hook: in a multi-process run, commit the phase's state on every rank first."""
    if states is None:
        return on_phase_end

    def hook(index: int, phase: Phase) -> None:
        states.commit()
        if on_phase_end is not None:
            on_phase_end(index, phase)

    return hook


def versions() -> dict[str, str]:
    return {"engine": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}
