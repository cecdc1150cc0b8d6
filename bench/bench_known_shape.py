"""How close the method gets to a known shape with an ideal generator, as the schedule grows; prints JSON.

    python bench/bench_known_shape.py [--scales 1 4] [--stages 1 2] [--seeds 0 1] [--threads 1] [--set key=value ...]
                                      [--frontal [--bank exact|relabelled]] [--masks collected|ones]
                                      [--heads I [I ...] [--head-seed 1] [--avg-gt-images 2000]]
    python bench/bench_known_shape.py --summarise RUNS.jsonl [...] [--heads I ...] [--against OTHER.jsonl ...]

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

By default the head is session 5's (synthetic seed 5, image 0). --heads runs each of the given images
of `python -m engine evaluate`'s held-out set (--head-seed, 1) as its own ideal generator, and adds issue
#6's baselines to every run's references: the average GT depth of --avg-gt-images training renders (seed
0; at view 0 with --frontal, since the inputs are then frontal) and the `default` preset's ellipsoid of
the head's silhouette. The last line then also holds the means over the runs and issue #6's ratios of
those means, as `evaluate` reports them: how near the targets the method comes when the GAN is perfect.
Every run also records V's reading of the input's (pitch, yaw) next to the true ones, in degrees
("input_view_deg"). --summarise recomputes that summary from the per-run lines of earlier runs (several files: one per
process of a split run; --heads keeps those images only), and --against counts the heads on which they
beat other runs.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch

from engine import evaluate, nets, prior, render, weights
from engine.config import Config, load_config
from engine.data.known_shape import METHOD_OWN, KnownShape, known_shape_target
from engine.data.mesh import load_base_mesh
from engine.device import tune_cpu_allocator
from engine.metrics import depth_metrics
from engine.pipeline.bank import Bank
from engine.pipeline.trainer import Trainer

BASE = ["net_width=0.25", "perceptual=\"mobilenet-v2\"", "step2_feature_loss=\"none\"", "save_results=false",
        "projection=\"optimize\"", "projection_iters=20", "prior_near=0.91", "lam_bank_view=100", "lr=3e-4",
        "collect_iters=6", "view_mvn_path=none", "light_mvn_path=none", *METHOD_OWN]
PRESET = ["perceptual=\"mobilenet-v2\"", "step2_feature_loss=\"none\"", "save_results=false"]


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


def config(method: str, scale: int | None, stages: int | None, extra: list[str]) -> Config:
    """The method's own parts at the bench's schedule, or the `default` preset as it is (its taught V and L,
    schedule and projection) with only what a generator without a discriminator needs (PRESET)."""
    if method == "preset":
        return load_config("default", overrides=[*PRESET, *extra])
    flags = ", ".join(["false"] * stages)
    flip3 = ", ".join(["true"] + ["false"] * (stages - 1))
    return load_config("default", overrides=[
        *BASE, f"num_stage={stages}", f"stage_len_dict=[{60 * scale}, 1, {150 * scale}]",
        f"stage_len_dict2=[{20 * scale}, 1, {75 * scale}]", f"flip1_cfg=[{flags}]", f"flip3_cfg=[{flip3}]",
        *extra])


def run(cfg: Config, seed: int, head: tuple[int, int], frontal: bool, bank: str, masks: str,
        avg_gt: torch.Tensor | None) -> dict:
    torch.manual_seed(seed)
    known = known_shape_target(*head, frontal=frontal)
    mvns = (nets.resolve_mvn(cfg.view_mvn_path, "view"), nets.resolve_mvn(cfg.light_mvn_path, "light"))
    model, target, ellipsoid = known.setup(cfg, mvns)
    if cfg.pretrain:
        nets.load_gan2shape_checkpoint(weights.resolve(cfg.pretrain), model.nets)
    depth_gt, mask_gt = known.depth, known.mask
    with torch.no_grad():
        read = model.to_transform(model.predict_view(target.image))[0, :2]
    input_view = {"read": [round(math.degrees(float(a)), 2) for a in read],
                  "true": [round(math.degrees(float(a)), 2) for a in known.generator.module.view(known.z0)[0, :2]]}

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
    return {"stages": cfg.num_stage, "seed": seed, "head": list(head), "frontal": frontal, "bank": bank,
            "masks": masks, "references": references(known, avg_gt), "input_view_deg": input_view,
            "label_spread": label_spread, "label_error": label_error,
            "iterations": {"step1": [p.iterations for p in trainer.phases if p.step == "step1"],
                           "step3": [p.iterations for p in trainer.phases if p.step == "step3"]},
            "seconds": round(time.perf_counter() - t0, 1),
            "prior": scores(ellipsoid, torch.ones_like(ellipsoid), depth_gt, mask_gt, model.cam),
            "fitted": fitted, "after_each_stage": per_stage, "final": per_stage[-1]}


def references(known: KnownShape, avg_gt: torch.Tensor | None) -> dict:
    """Depths that need no training: flat, the official and the preset's ellipsoids, the exact shape and,
    given its map, the average GT depth."""
    depth_gt, mask_gt = known.depth, known.mask
    cam, ones = render.Camera(depth_gt.shape[-1]), torch.ones_like(depth_gt)
    out = {"flat": scores(ones, ones, depth_gt, mask_gt, cam)}
    for near in (0.91, 0.98):
        ellipsoid = prior.ellipsoid_for(mask_gt.float(), load_config("default", overrides=[f"prior_near={near}"]))[None]
        out[f"ellipsoid_near_{near}"] = scores(ellipsoid, ones, depth_gt, mask_gt, cam)
    out["exact"] = scores(depth_gt, ones, depth_gt, mask_gt, cam)
    if avg_gt is not None:
        out["avg_gt"] = scores(avg_gt[None], ones, depth_gt, mask_gt, cam)
    return out


def summary(runs: list[dict]) -> dict:
    """Mean and population std over the runs of the final depth, of D after the prior fit ("fitted"), of the
    ellipsoid it was fitted to ("prior") and of the references; issue #6's ratios of the means (the prior
    being the `default` preset's ellipsoid, as in `evaluate`); the mean seconds per run and, where the runs
    have them, the mean absolute error of V's reading of the input's view and the mean slopes of what the
    first bank's projections show on their labels."""
    rows = {"final": [r["final"] for r in runs], "fitted": [r["fitted"] for r in runs],
            "prior": [r["prior"] for r in runs]}
    for name in runs[0]["references"]:
        rows[name] = [r["references"][name] for r in runs]
    stats = {name: {m: {"mean": round(float(np.mean([r[m] for r in v])), 4),
                        "std": round(float(np.std([r[m] for r in v])), 4)} for m in ("side_x100", "mad_deg")}
             for name, v in rows.items()}
    renamed = {evaluate.PREDICTION: stats["final"], evaluate.PRIOR: stats["ellipsoid_near_0.98"]}
    if "avg_gt" in stats:
        renamed[evaluate.AVERAGE] = stats["avg_gt"]
    targets = {k: {"value": None if v["value"] is None else round(v["value"], 4), "target_max": v["target_max"],
                   "met": v["met"]} for k, v in evaluate.ratios(renamed).items()}
    better = sum(r["final"]["mad_deg"] < r["references"]["ellipsoid_near_0.98"]["mad_deg"] for r in runs)
    out = {"runs": len(runs), "heads": [r["head"] for r in runs], "stats": stats, "ratios": targets,
           "mad_below_preset_prior": better, "mean_seconds": round(float(np.mean([r["seconds"] for r in runs])), 1)}
    if all("input_view_deg" in r for r in runs):
        gaps = np.array([np.subtract(r["input_view_deg"]["read"], r["input_view_deg"]["true"]) for r in runs])
        out["input_view_abs_error_deg"] = {"pitch": round(float(np.abs(gaps[:, 0]).mean()), 2),
                                           "yaw": round(float(np.abs(gaps[:, 1]).mean()), 2)}
    if all(r["label_error"] for r in runs):
        out["first_bank_slope"] = {k: round(float(np.mean([r["label_error"][0]["slope"][k] for r in runs])), 4)
                                   for k in runs[0]["label_error"][0]["slope"]}
    return out


def head_to_head(runs: list[dict], against: list[dict]) -> dict:
    """On the heads both sets ran: how many final depths beat the other set's, by MAD and by SIDE."""
    other = {tuple(r["head"]): r["final"] for r in against}
    pairs = [(r["final"], other[tuple(r["head"])]) for r in runs if tuple(r["head"]) in other]
    return {"heads": len(pairs), "better_mad": sum(a["mad_deg"] < b["mad_deg"] for a, b in pairs),
            "better_side": sum(a["side_x100"] < b["side_x100"] for a, b in pairs)}


def read_runs(paths: list[str], heads: list[int] | None) -> list[dict]:
    """The per-run lines of earlier runs' output files, restricted to the images `heads` if given."""
    runs = []
    for path in paths:
        with open(path) as f:
            runs += [row for row in map(json.loads, f) if "final" in row]
    return [r for r in runs if heads is None or r["head"][1] in heads]


def average_gt(frontal: bool, images: int) -> torch.Tensor:
    """`evaluate`'s average-GT map over training renders, at view 0 for frontal inputs."""
    cfg = load_config("default")
    depth = evaluate.average_gt_depth(cfg, images, load_base_mesh(), canonical=frontal)
    return torch.from_numpy(depth.astype(np.float32))


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
    parser.add_argument("--method", choices=["own", "preset"], default="own",
                        help="own: the method's own parts (BASE) at --scales and --stages; preset: the default "
                             "preset as it is, with its taught V and L (--scales and --stages ignored)")
    parser.add_argument("--heads", type=int, nargs="+", help="images of the held-out set, each its own generator")
    parser.add_argument("--head-seed", type=int, default=1, help="synthetic seed of --heads (evaluate's held-out 1)")
    parser.add_argument("--avg-gt-images", type=int, default=2000, help="training renders in the average-GT map")
    parser.add_argument("--summarise", nargs="+", metavar="FILE",
                        help="only summarise earlier runs' per-run lines (of the images --heads, if given)")
    parser.add_argument("--against", nargs="+", metavar="FILE",
                        help="with --summarise: count the heads on which the summarised runs beat these files' runs")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", dest="extra", action="append", default=[], help="extra config override key=value")
    args = parser.parse_args()
    if args.against and not args.summarise:
        parser.error("--against needs --summarise")
    if args.summarise:
        runs = read_runs(args.summarise, args.heads)
        versus = {"against": head_to_head(runs, read_runs(args.against, args.heads))} if args.against else {}
        print(json.dumps({"from": args.summarise, **summary(runs), **versus}))
        return
    if args.bank != "collected" and not args.frontal:
        parser.error(f"--bank {args.bank} needs --frontal")
    tune_cpu_allocator()
    torch.set_num_threads(args.threads)
    heads = [(args.head_seed, i) for i in args.heads] if args.heads else [(5, 0)]
    avg_gt = average_gt(args.frontal, args.avg_gt_images) if args.heads else None
    schedules = [(s, k) for s in args.stages for k in args.scales] if args.method == "own" else [(None, None)]
    runs = []
    for head in heads:
        for stages, scale in schedules:
            for seed in args.seeds:
                cfg = config(args.method, scale, stages, args.extra)
                runs.append({"method": args.method, "scale": scale, "overrides": args.extra,
                             **run(cfg, seed, head, args.frontal, args.bank, args.masks, avg_gt)})
                print(json.dumps(runs[-1]), flush=True)
    print(json.dumps({"threads": args.threads, **summary(runs), "runs": runs}))


if __name__ == "__main__":
    main()
