"""The stage/step loop (spec §1.3): phases in order, fresh Adam per phase, the bank, resume.

The run is the flat phase list of `engine.config.schedule`. After every finished phase the whole
training state (nets, bank, step-1 caches, RNG states, previews so far) is saved atomically, so an
interrupted run resumed from it ends bit-identical to an uninterrupted run with the same seed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import prior
from ..config import Config, Phase, schedule
from ..metrics import depth_metrics
from ..progress import Progress
from . import state as state_io
from .bank import Bank, Batch
from .model import Model, Target

# Relative cost of one iteration of each phase kind (CPU seconds per iteration of the `default` preset,
# 1 thread, measured 2026-11-25: step1 0.062, step2 0.26, collect 0.062, step3 0.22, flipped step3 0.33),
# normalised to step 2; weights the progress fraction over the run.
ITER_COST = {"project": 0.2, "prior": 0.1, "step1": 0.24, "step2": 1.0, "collect": 0.24, "step3": 0.85}
FLIP3_COST = 1.5  # step 3 with flip3 renders and compares twice the samples


def phase_cost(phase: Phase, cfg: Config) -> float:
    """Relative cost of a phase; a collect iteration of projection "optimize" runs `projection_iters`
    step-2 iterations of its own (measured at 40 of them: 6.3 s per collect iteration against 0.17 s per
    step 2), one of projection "walk" about one (0.3 s at 6 steps)."""
    per = ITER_COST[phase.step] * (FLIP3_COST if phase.step == "step3" and phase.flip3 else 1.0)
    if phase.step == "collect" and cfg.projection == "optimize":
        per = ITER_COST["step2"] * cfg.projection_iters
    elif phase.step == "collect" and cfg.projection == "walk":
        per = ITER_COST["step2"]
    return per * phase.iterations


def plan(cfg: Config, num_images: int, need_prior: bool) -> list[Phase]:
    """The schedule, with the ellipsoid fit iff no pretrained depth net was loaded (§1.5)."""
    phases = [p for p in schedule(cfg, num_images) if need_prior or p.step != "prior"]
    if need_prior and cfg.prior_fit_iters > 0 and phases[0].step != "prior":
        phases.insert(0, Phase(0, "prior", cfg.prior_fit_iters, ("netD",), False, False, 0))
    return phases


def preview_stage_after(phase: Phase) -> int | None:
    """Which preview set (§10.1) is due after `phase`: 0 after stage-0 step 2, s+1 after step 3 of stage s."""
    if phase.step == "collect" and phase.stage == 0:
        return 0
    if phase.step == "step3":
        return phase.stage + 1
    return None


@dataclass
class RunLog:
    """What the run reports: per-phase first/last loss and seconds, metrics of the last step-1 forward."""

    phases: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    previews: dict[str, dict[str, list[np.ndarray]]] = field(default_factory=dict)

    def state_dict(self) -> dict[str, Any]:
        previews = {s: {k: [torch.from_numpy(f) for f in frames] for k, frames in kinds.items()}
                    for s, kinds in self.previews.items()}
        return {"phases": self.phases, "metrics": self.metrics, "previews": previews}

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> RunLog:
        previews = {s: {k: [f.numpy() for f in frames] for k, frames in kinds.items()}
                    for s, kinds in data["previews"].items()}
        return cls(list(data["phases"]), dict(data["metrics"]), previews)


PreviewFn = Callable[[Model, Target, int, bool], dict[str, list[np.ndarray]]]
PriorFn = Callable[[Target], torch.Tensor]
GradSync = Callable[[Iterable[torch.nn.Parameter]], None]


class Trainer:
    """Runs the schedule for one target (instance mode) or a list of targets (joint pre-training)."""

    def __init__(self, model: Model, targets: list[Target], cfg: Config, *, seed: int = 0,
                 prior_fn: PriorFn | None = None, need_prior: bool = True, progress: Progress | None = None,
                 state_path: Path | None = None, fingerprint: str = "", preview_fn: PreviewFn | None = None,
                 on_phase_end: Callable[[int, Phase], None] | None = None, grad_sync: GradSync | None = None):
        """`grad_sync(params)` runs between every backward and optimiser step with the trained nets'
        parameters (the official shared-weights mode averages the gradients over ranks there, §1.9)."""
        self.model, self.targets, self.cfg = model, targets, cfg
        self.seed = seed
        self.prior_fn = prior_fn
        self.progress = progress
        self.state_path = state_path
        self.fingerprint = fingerprint
        self.preview_fn = preview_fn
        self.on_phase_end = on_phase_end
        self.grad_sync = grad_sync
        self.phases = plan(cfg, len(targets), need_prior)
        self.gen = torch.Generator().manual_seed(seed)
        self.banks: list[Bank | None] = [None] * len(targets)
        self.order = list(range(len(targets)))  # joint mode: image order of the current pass
        self.pos = 0
        self.log = RunLog()
        self.next_phase = 0
        self._pending: dict[int, list[Batch]] = {}  # bank batches being collected

    # ------------------------------------------------------------------------------------------
    @property
    def joint(self) -> bool:
        return len(self.targets) > 1

    @property
    def current(self) -> int:
        return self.order[self.pos]

    def next_image(self) -> None:
        """Joint mode (§1.7): one image per iteration, a new random order after every pass."""
        if not self.joint:
            return
        self.pos += 1
        if self.pos == len(self.order):
            self.pos = 0
            self.order = torch.randperm(len(self.targets), generator=self.gen).tolist()

    def optimizers(self, names: tuple[str, ...]) -> list[torch.optim.Optimizer]:
        """A fresh Adam per trained net (§1.4: coupled weight decay, new moments every phase)."""
        c = self.cfg
        lr = {"netEnc": c.lr_enc or c.lr, "netD": c.lr_depth or c.lr}
        return [torch.optim.Adam(self.model.nets[n].parameters(), lr=lr.get(n, c.lr), betas=tuple(c.adam_betas),
                                 weight_decay=c.weight_decay) for n in names]

    # ------------------------------------------------------------------------------------------
    def run(self, saved: dict[str, Any] | None = None) -> RunLog:
        """Run the phases after those recorded in `saved` (a state from `state.load_state`, or None to start).

        The caller has started `progress` with a total that includes every phase's `phase_cost`.
        """
        torch.manual_seed(self.seed)
        if saved is not None:
            self.load(saved)
        if self.progress is not None and self.next_phase > 0:
            done = sum(phase_cost(p, self.cfg) for p in self.phases[:self.next_phase])
            self.progress.advance(done, resumed_at=self.next_phase)
        for index in range(self.next_phase, len(self.phases)):
            phase = self.phases[index]
            t0 = time.perf_counter()
            first, last = self.run_phase(phase)
            self.log.phases.append({**_describe(phase), "seconds": round(time.perf_counter() - t0, 3),
                                    "first_loss": first, "last_loss": last})
            self.after_phase(phase)
            self.next_phase = index + 1
            if self.state_path is not None:
                state_io.save_state(self.state_path, self.state_dict())
            if self.on_phase_end is not None:
                self.on_phase_end(index, phase)
        return self.log

    def run_phase(self, phase: Phase, after_step: Callable[[int], None] | None = None
                  ) -> tuple[float | None, float | None]:
        """One phase; `after_step(k)` is called after the k-th optimisation step of a training phase."""
        model = self.model
        model.set_frame(self.targets[self.current])
        model.train_only(phase.nets)
        unit = phase_cost(phase, self.cfg) / max(phase.iterations, 1)
        losses: list[float] = []

        def tick(it: int, loss: float | None = None) -> None:
            if loss is not None:
                losses.append(loss)
            if self.progress is not None:
                self.progress.advance(unit, stage=phase.stage, step=phase.step, iter=it, total=phase.iterations)

        if phase.step == "prior":
            target = self.targets[self.current]
            prior.fit_prior(model.nets["netD"], target.image, self.prior_fn(target), self.cfg,
                            progress=lambda i, _total, loss: tick(i, loss), grad_sync=self.grad_sync,
                            loss_fn=model.prior_loss(target))
        elif phase.step == "collect":
            for it in range(phase.iterations):
                self.collect(phase, it)
                tick(it + 1)
        else:
            opts = self.optimizers(phase.nets)
            warm = self.cfg.step3_warmup if phase.step == "step3" else 0

            def ramp(i: int) -> float:  # the learning-rate factor of step i (cfg.step3_warmup)
                return min(1.0, (i + 1) / warm)
            ramps = [torch.optim.lr_scheduler.LambdaLR(opt, ramp) for opt in opts] if warm else []
            for it in range(phase.iterations):
                loss = self.forward(phase, self.targets[self.current])
                for opt in opts:
                    opt.zero_grad(set_to_none=True)
                loss.backward()
                if self.grad_sync is not None:
                    self.grad_sync(p for n in phase.nets for p in model.nets[n].parameters())
                for opt in opts:
                    opt.step()
                for scheduler in ramps:
                    scheduler.step()
                self.next_image()
                tick(it + 1, float(loss.detach()))
                if after_step is not None:
                    after_step(it + 1)
        return (losses[0], losses[-1]) if losses else (None, None)

    def forward(self, phase: Phase, target: Target) -> torch.Tensor:
        model = self.model
        if phase.step == "step1":
            loss, out = model.step1_forward(target, flip=phase.flip1, refresh_mask=self.joint)
            self.record_metrics(target, out)
            return loss
        if phase.step == "step2":
            return model.step2_forward(target, self.gen)[0]
        bank = self.banks[self.current]
        get = bank.random_batch if self.joint else bank.next_batch
        images, masks, views, lights = (t.to(model.device) for t in get(self.cfg.batchsize, self.gen))
        loss, out = model.step3_forward(target, images, masks, phase.flip1, phase.flip3, views, lights)
        self.record_metrics(target, out)
        return loss

    def collect(self, phase: Phase, it: int) -> None:
        """One bank batch (§1.6). Joint mode deals the batches out to the images in list order, so each
        gets collect_iters / num_images of them (the official split; following the training order
        instead would leave an image without a bank when a pass ends mid-collection)."""
        i = it % len(self.targets)
        self._pending.setdefault(i, []).append(self.model.collect_batch(self.targets[i], self.gen))
        if it == phase.iterations - 1:
            for j, batches in self._pending.items():
                self.banks[j] = Bank(*(torch.cat(parts) for parts in zip(*batches, strict=True)))
            self._pending = {}

    def record_metrics(self, target: Target, out: dict) -> None:
        if target.depth_gt is None or target is not self.targets[0]:
            return
        m = depth_metrics(out["depth_view"][:1].detach(), target.depth_gt, out["valid"][:1], self.model.cam)
        self.log.metrics = {"side": float(m.side[0]), "side_x100": float(m.side[0] * 100), "mad_deg": float(m.mad[0]),
                            "depth_mae": float(m.mae[0]), "depth_mse": float(m.mse[0])}

    def after_phase(self, phase: Phase) -> None:
        if phase.step == "step1" and self.joint:
            self.step1_collect()
        stage = preview_stage_after(phase)
        if stage is not None and self.cfg.save_results and self.preview_fn is not None:
            last = stage == self.cfg.num_stage
            self.log.previews[f"stage{stage}"] = self.preview_fn(self.model, self.targets[0], stage, last)

    @torch.no_grad()
    def step1_collect(self) -> None:
        """Joint mode: a no-grad step-1 forward of every image caches its canonical estimate (§1.7)."""
        self.model.train_only(())
        for target in self.targets:
            self.model.step1_forward(target, flip=False, refresh_mask=True)

    # ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "next_phase": self.next_phase,
            "nets": {n: {k: v.detach().cpu() for k, v in net.state_dict().items()}
                     for n, net in self.model.nets.items()},
            "banks": [None if b is None else b.state_dict() for b in self.banks],
            "caches": [t.cache_state() for t in self.targets],
            "latents": [t.latent.detach().cpu() for t in self.targets],
            "light_ab": self.model.light_ab.detach().cpu(),
            "order": self.order, "pos": self.pos,
            "rng_torch": torch.get_rng_state(), "rng_gen": self.gen.get_state(),
            "log": self.log.state_dict(),
        }

    def load(self, data: dict[str, Any]) -> None:
        device = self.model.device
        for n, net in self.model.nets.items():
            net.load_state_dict(data["nets"][n])
        self.banks = [None if b is None else Bank.from_state(b) for b in data["banks"]]
        for target, cache in zip(self.targets, data["caches"], strict=True):
            target.cache = {k: v.to(device) for k, v in cache.items()}
        self.model.light_ab = data["light_ab"].to(device)
        self.order, self.pos = list(data["order"]), int(data["pos"])
        torch.set_rng_state(data["rng_torch"])
        self.gen.set_state(data["rng_gen"])
        self.log = RunLog.from_state(data["log"])
        self.next_phase = int(data["next_phase"])


def _describe(phase: Phase) -> dict[str, Any]:
    return {"stage": phase.stage, "step": phase.step, "iterations": phase.iterations, "nets": list(phase.nets),
            "flip1": phase.flip1, "flip3": phase.flip3}
