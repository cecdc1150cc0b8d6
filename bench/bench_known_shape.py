"""How close the method gets to a known shape with an ideal generator, as the schedule grows; prints JSON.

    python bench/bench_known_shape.py [--scales 1 4] [--stages 1 2] [--seeds 0 1] [--threads 1] [--set key=value ...]
                                      [--frontal [--bank exact|relabelled]] [--masks collected|ones]

The generator is engine.data.known_shape's ideal one (the head's exact depth and albedo rendered
under any view and light), so the result bounds what a better GAN could give at that schedule.
Schedule at scale s: stage 0 runs (60·s, 1, 150·s) iterations of steps 1-3, later stages (20·s, 1,
75·s); the rest is tests/test_pipeline_known_shape.py's configuration (net width 0.25, per-sample
projection, lam_bank_view 100, lr 3e-4, official ellipsoid). Reported per run: SIDE (×10⁻²) and MAD
of the ellipsoid, of D after the prior fit, and of the final depth, next to a flat plane, the
`default` preset's flatter ellipsoid. The ground truth is the generator's own depth and silhouette of
the input, so the exact shape scores SIDE 0 (its MAD, the floor, comes from the normal estimate on the
grid). --frontal puts the input in the canonical view instead of the synthetic photo's (yaw 27°).
With it, every bank's "label_error" is the RMS gap (V's units; L's units per output) between the
labels it holds and the views and lights its projections show (their latents fitted in the ideal
generator), with the slope of shown on held label per angle and light direction, "label_spread"
the spread of its labels; --bank exact swaps every collected bank for exact renders labelled with
their true views and lights (what step 3 makes of a perfect step 2), and --bank relabelled keeps the
collected projections but labels them with what they show. --masks ones drops the pseudo samples'
masks from step 3. The labels reach V and L only through --set lam_bank_view /
lam_bank_light; --set bank_labels=\"fitted\" refits them in the pipeline itself.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from engine import prior, render
from engine.config import load_config
from engine.data.known_shape import METHOD_OWN, KnownShape, known_shape_target
from engine.device import tune_cpu_allocator
from engine.metrics import depth_metrics
from engine.pipeline.bank import Bank
from engine.pipeline.trainer import Trainer

BASE = ["net_width=0.25", "perceptual=\"mobilenet-v2\"", "step2_feature_loss=\"none\"", "save_results=false",
        "projection=\"optimize\"", "projection_iters=20", "prior_near=0.91", "lam_bank_view=100", "lr=3e-4",
        "collect_iters=6", *METHOD_OWN]


def scores(depth: torch.Tensor, valid: torch.Tensor, depth_gt: torch.Tensor, mask_gt: torch.Tensor,
           cam: render.Camera) -> dict[str, float]:
    m = depth_metrics(depth, depth_gt, valid, cam, mask_gt=mask_gt)
    return {"side_x100": round(float(m.side[0]) * 100, 4), "mad_deg": round(float(m.mad[0]), 2)}


def spread(views: torch.Tensor, lights: torch.Tensor) -> dict[str, float | list[float]]:
    """How far a bank's labels range: std of yaw and pitch (V's units) and of L's four outputs."""
    return {"yaw_std": round(float(views[:, 1].std()), 4), "pitch_std": round(float(views[:, 0].std()), 4),
            "light_std": [round(float(s), 4) for s in lights.std(0)]}


def slope(held: torch.Tensor, shown: torch.Tensor) -> float:
    """Least-squares slope of what the projections show on the labels held (1: followed, 0: ignored)."""
    x = held - held.mean()
    return round(float((x * (shown - shown.mean())).sum() / x.pow(2).sum().clamp_min(1e-12)), 4)


def shown_labels(known: KnownShape, bank: Bank, rot_range_deg: float) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """The views and lights a bank's projections show (their latents fitted in the ideal generator), the
    RMS gap of the bank's own labels to them and the slope of shown on held label (yaw, pitch, light x, y)."""
    shown = known.fit_latents(bank.images)
    views, lights = known.labels(shown, rot_range_deg)
    with torch.no_grad():
        fit_l1 = float((known.generator.synthesize(shown) - bank.images).abs().mean())
    error = {"view_rmse": round(float((views - bank.views).pow(2).mean().sqrt()), 4),
             "light_rmse": [round(float(e), 4) for e in (lights - bank.lights).pow(2).mean(0).sqrt()],
             "latent_fit_l1": round(fit_l1, 5),
             "slope": {"yaw": slope(bank.views[:, 1], views[:, 1]), "pitch": slope(bank.views[:, 0], views[:, 0]),
                       "light_x": slope(bank.lights[:, 2], lights[:, 2]),
                       "light_y": slope(bank.lights[:, 3], lights[:, 3])}}
    return views, lights, error


def run(scale: int, stages: int, extra: list[str], seed: int, frontal: bool, bank: str, masks: str) -> dict:
    flags = ", ".join(["false"] * stages)
    flip3 = ", ".join(["true"] + ["false"] * (stages - 1))
    cfg = load_config("default", overrides=[
        *BASE, f"num_stage={stages}", f"stage_len_dict=[{60 * scale}, 1, {150 * scale}]",
        f"stage_len_dict2=[{20 * scale}, 1, {75 * scale}]", f"flip1_cfg=[{flags}]", f"flip3_cfg=[{flip3}]",
        *extra])
    torch.manual_seed(seed)
    known = known_shape_target(frontal=frontal)
    model, target, ellipsoid = known.setup(cfg)
    depth_gt, mask_gt = known.depth, known.mask

    def current() -> dict[str, float]:
        with torch.no_grad():
            out = model.predict(target.image)
        return scores(out["depth_view"], out["valid"], depth_gt, mask_gt, model.cam)

    trainer = Trainer(model, [target], cfg, seed=seed, prior_fn=lambda t: ellipsoid)
    t0 = time.perf_counter()
    per_stage, fitted, label_error, label_spread = [], None, [], []
    for phase in trainer.phases:
        trainer.run_phase(phase)
        trainer.after_phase(phase)
        if phase.step == "collect":
            old = trainer.banks[0]
            images, views, lights = old.images, old.views, old.lights
            if frontal:
                shown_views, shown_lights, error = shown_labels(known, old, cfg.xyz_rotation_range)
                label_error.append(error)
                if bank == "relabelled":
                    views, lights = shown_views, shown_lights
            if bank == "exact":
                images, views, lights = known.labelled_renders(len(old), seed + 100 * phase.stage,
                                                               rot_range_deg=cfg.xyz_rotation_range)
            keep_masks = masks == "collected" or (masks == "auto" and bank != "exact")
            trainer.banks[0] = Bank(images, old.masks if keep_masks else torch.ones_like(old.masks), views, lights)
            label_spread.append(spread(views, lights))
        if phase.step == "prior":
            fitted = current()
        elif phase.step == "step3":
            per_stage.append(current())
    return {"scale": scale, "stages": stages, "seed": seed, "frontal": frontal, "bank": bank, "masks": masks,
            "label_spread": label_spread, "label_error": label_error,
            "overrides": extra,
            "iterations": {"step1": [p.iterations for p in trainer.phases if p.step == "step1"],
                           "step3": [p.iterations for p in trainer.phases if p.step == "step3"]},
            "seconds": round(time.perf_counter() - t0, 1),
            "prior": scores(ellipsoid, torch.ones_like(ellipsoid), depth_gt, mask_gt, model.cam),
            "fitted": fitted, "after_each_stage": per_stage, "final": per_stage[-1]}


def references(frontal: bool) -> dict:
    """Depths that need no training: flat, the official and the preset's ellipsoids, the exact shape."""
    known = known_shape_target(frontal=frontal)
    depth_gt, mask_gt = known.depth, known.mask
    cam, ones = render.Camera(depth_gt.shape[-1]), torch.ones_like(depth_gt)
    out = {"flat": scores(ones, ones, depth_gt, mask_gt, cam)}
    for near in (0.91, 0.98):
        ellipsoid = prior.ellipsoid_for(mask_gt.float(), load_config("default", overrides=[f"prior_near={near}"]))[None]
        out[f"ellipsoid_near_{near}"] = scores(ellipsoid, ones, depth_gt, mask_gt, cam)
    out["exact"] = scores(depth_gt, ones, depth_gt, mask_gt, cam)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--stages", type=int, nargs="+", default=[1])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--frontal", action="store_true", help="input in the canonical view")
    parser.add_argument("--bank", choices=["collected", "exact", "relabelled"], default="collected",
                        help="exact: replace each collected bank by exact renders labelled with their true views "
                             "and lights; relabelled: keep its images, label them with the views and lights they "
                             "show (both need --frontal)")
    parser.add_argument("--masks", choices=["auto", "collected", "ones"], default="auto",
                        help="step-3 masks of the bank: the collected pseudo samples' or none (all ones); "
                             "auto: ones for --bank exact, collected otherwise")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", dest="extra", action="append", default=[], help="extra config override key=value")
    args = parser.parse_args()
    if args.bank != "collected" and not args.frontal:
        parser.error(f"--bank {args.bank} needs --frontal")
    tune_cpu_allocator()
    torch.set_num_threads(args.threads)
    result = {"threads": args.threads, "references": references(args.frontal), "runs": []}
    for stages in args.stages:
        for scale in args.scales:
            for seed in args.seeds:
                result["runs"].append(run(scale, stages, args.extra, seed, args.frontal, args.bank,
                                          args.masks))
                print(json.dumps(result["runs"][-1]), flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
