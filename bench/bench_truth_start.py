"""Does the `default` pipeline keep a true shape it is started from? Phase-by-phase depth scores; prints JSON.

    python bench/bench_truth_start.py [--start prior|truth] [--background 1.05] [--n 6] [--seed 1] [--threads 1]
                                      [--weights FILE] [--set key=value ...]

Why: the preset's depth follows the ground truth less than the ellipsoid it is fitted to first (model card
item 14), and the loss is taken in step 3, the part that learns from the GAN's bank. Whether that is an
optimisation problem (too few iterations, a poor start) or the objective itself preferring a wrong shape is
told by starting from the truth: --start truth fits D to the exact canonical depth of each held-out render
(the object at view 0, in the canonical frame, `prior_frame = "canonical"`) instead of the ellipsoid, and runs
every later phase unchanged. The render's background (1.1) is replaced by --background: D's depth is a tanh
into [0.9, 1.1] around its spatial mean, so 1.1 is out of its reach and its MSE would dominate the fit (the
objects span about 0.94-1.04). Longer fits: --set prior_fit_iters=... --set prior_fit_lr=... After every phase
the depth the model gives the input (no gradient, its own V's view) is scored as `engine evaluate` scores it
(SIDE ×10⁻², MAD) and by its agreement with the truth (bench_depth_agreement: correlation and slope of the
mean-free log depth). After each collection and each step 3 the step-3 objective (input term + every bank
sample, that stage's mirrored twin) is evaluated over the whole bank, so a step 3 that lowers it while the
agreement falls shows an objective that prefers a shape other than the truth. --start prior is the preset
itself, for the same trajectory.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from bench_bank_labels import held_out_run_args
from bench_depth_agreement import agreement

from engine import prior
from engine.config import load_config
from engine.data.mesh import load_base_mesh
from engine.device import tune_cpu_allocator
from engine.evaluate import (
    EvalOptions,
    HeldOutImage,
    camera,
    held_out_renders,
    hit,
    score,
    seen_in_views,
    write_test_set,
)
from engine.metrics import gt_mask
from engine.pipeline.bank import Bank
from engine.pipeline.run import Request, make_target, prior_depth, read_inputs, start_run
from engine.pipeline.trainer import Phase, Trainer
from engine.progress import Progress

CANDIDATES = ("prior_DA", "prior_A", "truth_A")


def scored(depth: np.ndarray, depth_gt: np.ndarray, cfg) -> dict[str, float]:
    """An input-view depth (float64) scored like `evaluate` scores a bundle, with its agreement."""
    valid = hit(depth, cfg)
    m = score(depth, valid, depth_gt.astype(np.float64), camera(cfg))
    corr, slope = agreement(depth, valid, depth_gt)
    return {"side_x100": round(float(m.side[0]) * 100, 3), "mad_deg": round(float(m.mad[0]), 2),
            "correlation": round(corr, 3), "slope": round(slope, 3)}


@torch.no_grad()
def depth_scores(trainer: Trainer, depth_gt: np.ndarray, cfg) -> dict[str, float]:
    """The input's depth in the model's own view."""
    model, target = trainer.model, trainer.targets[0]
    model.train_only(())
    return scored(model.predict(target.image)["depth_view"][0].double().numpy(), depth_gt, cfg)


@torch.no_grad()
def truth_in_own_view(trainer: Trainer, truth: torch.Tensor, depth_gt: np.ndarray, cfg) -> dict[str, float]:
    """What D's fit aims at: the truth map itself seen in V's view of the input."""
    model, target = trainer.model, trainer.targets[0]
    view_t = model.to_transform(model.predict_view(target.image))
    return scored(seen_in_views(cfg, truth.double(), view_t.double())[0].numpy(), depth_gt, cfg)


@torch.no_grad()
def bank_objective(trainer: Trainer, flip3: bool) -> float:
    """The step-3 loss over the whole bank of the (single) image at the current weights."""
    model, target = trainer.model, trainer.targets[0]
    model.train_only(())
    bank = trainer.banks[0]
    images, masks, views, lights = (t.to(model.device) for t in (bank.images, bank.masks, bank.views, bank.lights))
    loss, _ = model.step3_forward(target, images, masks, False, flip3, views, lights)
    return round(float(loss), 5)


def trajectory(trainer: Trainer, depth_gt: np.ndarray, cfg) -> dict:
    """Every phase in turn, scored after it; the bank objective around each step 3."""
    phases = []
    for phase in trainer.phases:
        before = bank_objective(trainer, phase.flip3) if phase.step == "step3" else None
        trainer.run_phase(phase)
        trainer.after_phase(phase)
        entry = {"stage": phase.stage, "step": phase.step, **depth_scores(trainer, depth_gt, cfg)}
        if phase.step == "step3":
            entry.update(objective_before=before, objective_after=bank_objective(trainer, phase.flip3))
        phases.append(entry)
    return {"phases": phases}


def run_to_first_step3(trainer: Trainer) -> Phase:
    """Every phase before stage 0's step 3, as the pipeline runs them; returns that step 3."""
    for phase in trainer.phases:
        if phase.step == "step3":
            return phase
        trainer.run_phase(phase)
        trainer.after_phase(phase)
    raise ValueError("the schedule has no step 3")


def judge(trainer: Trainer, truth: torch.Tensor, depth_gt: np.ndarray, cfg, args: argparse.Namespace) -> dict:
    """The preset's phases up to stage 0's bank, then stage 0's step 3 three times from the same state and
    bank: as the preset runs it (D and A trained), with D kept at its ellipsoid fit (A only), and with D
    refitted to the truth first (A only). The bank objective each reaches says which shape the bank favours."""
    model, target = trainer.model, trainer.targets[0]
    phase = run_to_first_step3(trainer)
    saved = copy.deepcopy({"nets": {n: net.state_dict() for n, net in model.nets.items()}, "cache": target.cache,
                           "light_ab": model.light_ab, "bank": trainer.banks[0].state_dict(),
                           "gen": trainer.gen.get_state(), "rng": torch.get_rng_state()})
    iters, lr = args.truth_fit.split(":")
    fit_cfg = load_config("default", overrides=[*args.extra, f"prior_fit_iters={iters}", f"prior_fit_lr={lr}"])
    out = {}
    for name in CANDIDATES:
        for n, net in model.nets.items():
            net.load_state_dict(saved["nets"][n])
        target.cache = copy.deepcopy(saved["cache"])
        model.light_ab = saved["light_ab"].clone()
        trainer.banks[0] = Bank.from_state(copy.deepcopy(saved["bank"]))
        trainer.gen.set_state(saved["gen"])
        torch.set_rng_state(saved["rng"])
        if name == "truth_A":
            model.train_only(("netD",))
            prior.fit_prior(model.nets["netD"], target.image, truth, fit_cfg)
        nets = phase.nets if name == "prior_DA" else ("netA",)
        before = bank_objective(trainer, phase.flip3)
        trainer.run_phase(replace(phase, nets=nets))
        out[name] = {"objective_before": before, "objective_after": bank_objective(trainer, phase.flip3),
                     **depth_scores(trainer, depth_gt, cfg)}
    return out


def mean_of(rows: list[dict], key: str) -> dict[str, float]:
    """Means over the images of every number under rows[i][key]."""
    return {k: round(float(np.mean([r[key][k] for r in rows])), 4) for k in rows[0][key]}


def held_out_trainers(cfg, args: argparse.Namespace, truth_start: bool = False
                      ) -> Iterator[tuple[HeldOutImage, torch.Tensor, Trainer, float]]:
    """Per held-out render (`args.n` of `args.seed`): the test image, its exact canonical depth (background
    `args.background`), a fresh single-image Trainer of `cfg` (D's first fit aims at that truth if
    `truth_start`, else at the ellipsoid) and the start time."""
    quiet = Progress(json_mode=True, out=io.StringIO())
    with tempfile.TemporaryDirectory() as tmp:
        mesh = load_base_mesh()
        tests = write_test_set(cfg, EvalOptions(out=Path(tmp), n=args.n, seed=args.seed), mesh)
        _, canonical, _ = held_out_renders(cfg, args.seed, args.n, mesh)
        for test, truth in zip(tests, canonical, strict=True):
            t0 = time.perf_counter()
            req = Request(test.item.image, Path(tmp) / "out", cfg, mask=Path(tmp) / "test" / "masks" /
                          f"{test.item.name}.png", weights=args.weights, export=False)
            device, frozen, model, need_prior = start_run(cfg, [req], None, quiet, args.weights)
            target = make_target(req, read_inputs(req, quiet), frozen, device, quiet, None)
            on_object = gt_mask(torch.from_numpy(truth)).numpy()  # the ground-truth rule evaluate scores with
            truth_t = torch.from_numpy(np.where(on_object, truth, args.background).astype(np.float32))[None].to(device)
            prior_fn = (lambda t, fixed=truth_t: fixed) if truth_start else (lambda t: prior_depth(t, cfg))
            trainer = Trainer(model, [target], cfg, seed=cfg.seed, need_prior=need_prior, prior_fn=prior_fn)
            torch.manual_seed(cfg.seed)
            yield test, truth_t, trainer, t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--start", choices=("prior", "truth"), default="truth")
    parser.add_argument("--background", type=float, default=1.05, help="canonical depth of the truth's background")
    parser.add_argument("--judge", action="store_true", help="compare shapes on one bank (the prior start's stage 0)")
    parser.add_argument("--truth-fit", default="1000:1e-4", help="--judge: iterations:lr of D's fit to the truth")
    held_out_run_args(parser)
    args = parser.parse_args()
    tune_cpu_allocator()
    torch.set_num_threads(args.threads)
    truth_start = args.start == "truth" and not args.judge
    overrides = args.extra + (['prior_frame="canonical"'] if truth_start else [])
    cfg = load_config("default", overrides=overrides)
    rows = []
    for test, truth_t, trainer, t0 in held_out_trainers(cfg, args, truth_start):
        reference = truth_in_own_view(trainer, truth_t, test.depth, cfg)
        run = judge(trainer, truth_t, test.depth, cfg, args) if args.judge else trajectory(trainer, test.depth, cfg)
        rows.append({"name": test.item.name, "seconds": round(time.perf_counter() - t0, 1),
                     "truth_in_own_view": reference, **run})
        print(json.dumps(rows[-1]), flush=True)
    reference = mean_of(rows, "truth_in_own_view")
    if args.judge:
        summary = {c: mean_of(rows, c) for c in CANDIDATES}
        print(json.dumps({"judge": True, "n": args.n, "seed": args.seed, "overrides": args.extra,
                          "truth_fit": args.truth_fit, "weights": args.weights, "truth_in_own_view": reference,
                          "mean_over_images": summary}))
        return
    keys = ("side_x100", "mad_deg", "correlation", "slope", "objective_before", "objective_after")
    means_by_phase = []
    for i, entry in enumerate(rows[0]["phases"]):
        means = {k: round(float(np.mean([r["phases"][i][k] for r in rows])), 4) for k in keys if k in entry}
        means_by_phase.append({"stage": entry["stage"], "step": entry["step"], **means})
    print(json.dumps({"start": args.start, "background": args.background, "n": args.n, "seed": args.seed,
                      "overrides": args.extra, "weights": args.weights, "truth_in_own_view": reference,
                      "mean_over_images": means_by_phase}))


if __name__ == "__main__":
    main()
