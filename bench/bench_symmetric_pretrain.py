"""How far symmetric pre-training across many GAN samples takes D, A, V and L on its own; prints JSON.

    python bench/bench_symmetric_pretrain.py [--iters 2500] [--batch 16] [--center 1] [--eval-every 250]
                                             [--n-eval 100] [--threads 1] [--weights FILE] [--out FILE.pth]
                                             [--source gan|renders] [--prior-weight W [--prior-iters K]]
                                             [--nets netD netA ...] [--set key=value ...]

The candidate next step of docs/default-model.md ("a light estimate that does not depend on one image's
shape"): Unsup3d's objective, batched, on fresh untruncated samples of the `default` generator. Each
iteration trains all four nets at once (Adam, the preset's lr and weight decay) on step 1's loss of the
batch with the mirrored twin (`Model.input_terms`, flip on), plus `--center` × the squared batch mean of
V's rotation outputs: the category's views are centred on frontal, and without the term V drifts to a
constant yaw at the edge of its range (docs/default-model.md, item 8). Every --eval-every iterations the
nets are scored as they are (no per-image training) on held-out renders of the data generator (seed 1):
SIDE ×10⁻² and MAD of the canonical depth seen in the predicted view (what `evaluate` scores in a
bundle; GT mask by the §11.2 rule), the slope of predicted on true yaw and pitch with the mean |yaw
error| next to always answering frontal, the correlation and slope of predicted on true light x, and the
light's scale: mean predicted k_a and k_d and mean |l_x|, |l_y| of L's direction outputs, each next to
the renders' true mean.

--prior-weight W adds, for the first --prior-iters iterations (default: all), W × the MSE between D's
depth and the preset's ellipsoid of each sample's silhouette (the pixels off the data's grey
background), the shape GAN2Shape's step 1 starts from: L then trains against coherent normals.
--source renders trains on the data generator's training renders (seed 0, the GAN's training set: exact
Lambertian shading) instead of GAN samples, to tell the GAN's part from the objective's.
--out writes the nets as a gan2shape checkpoint at every evaluation (usable as `--set pretrain=FILE`;
passed here, it also continues an earlier run from its nets, with a fresh optimiser). --nets picks the
nets trained (default all four); the others stay as the preset loads them, so `--nets netD netA` keeps
the taught V and L of the preset's `pretrain` (docs/default-model.md item 17). Defaults: MobileNetV2
perceptual net, lam_perc 0.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from engine import nets, prior
from engine.config import load_config
from engine.data.synth import SynthConfig, render_images
from engine.device import tune_cpu_allocator
from engine.errors import EngineError
from engine.evaluate import TRAINING_SEED, hit
from engine.metrics import depth_metrics
from engine.pipeline.model import Model
from engine.pipeline.run import build_model, load_frozen
from engine.progress import Progress

BASE = ['perceptual="mobilenet-v2"', "lam_perc=0"]
TRAINED = ("netD", "netA", "netV", "netL")
HELD_OUT_SEED, TRAINING_RENDERS = 1, 30_000  # scored on seed-1 renders; --source renders: train-gan's 30 000 of seed 0
BACKGROUND_TOLERANCE = 0.1  # in [-1, 1] units: farther from the background grey is object


def ellipsoids(images: torch.Tensor, cfg) -> tuple[torch.Tensor, torch.Tensor]:
    """The preset's ellipsoid of each image's silhouette (B×H×W) and 1 where one could be fitted (B)."""
    grey = SynthConfig.background * 2 - 1
    masks = ((images - grey).abs().amax(1) > BACKGROUND_TOLERANCE).float()
    depths, ok = torch.ones_like(masks), torch.zeros(len(masks))
    for i, mask in enumerate(masks):
        try:
            depths[i] = prior.ellipsoid_for(mask[None, None], cfg).reshape(mask.shape).float()
            ok[i] = 1.0
        except EngineError:  # no object found: the sample gets no prior term
            pass
    return depths, ok


def slope(true: np.ndarray, predicted: np.ndarray) -> float:
    return round(float(np.polyfit(true, predicted, 1)[0]), 4)


def renders(seed: int, indices: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """Data-generator renders with their ground truth, plus "image": the RGB as the nets take it (B×3×H×W, ±1)."""
    data = render_images(SynthConfig(image_size=size), seed, indices)
    data["image"] = torch.from_numpy(data["rgb"]).float().permute(0, 3, 1, 2) / 127.5 - 1
    return data


def score(model: Model, data: dict, trained: tuple[str, ...]) -> dict[str, float]:
    """The nets as they are on the held-out renders (eval mode, no gradients)."""
    model.train_only(())
    with torch.no_grad():
        out = model.predict(data["image"])
    model.train_only(trained)
    depth = out["depth_view"].double()
    valid = torch.from_numpy(hit(depth.numpy(), model.cfg))
    m = depth_metrics(depth, torch.from_numpy(data["depth"]).double(), valid, model.cam)
    angle = np.degrees(out["view_t"][:, :3].numpy())
    true = np.degrees(data["view"][:, :3])
    light, true_light = out["light"].numpy(), data["light"]
    light_x, true_x = light[:, 2], true_light[:, 2]
    scale = {"k_a": (out["ambient"].numpy(), true_light[:, 0]), "k_d": (out["diffuse_k"].numpy(), true_light[:, 1]),
             "abs_l_x": (np.abs(light[:, 2]), np.abs(true_light[:, 2])),
             "abs_l_y": (np.abs(light[:, 3]), np.abs(true_light[:, 3]))}
    return {"side_x100": round(float(np.nanmean(m.side.numpy())) * 100, 4),
            "mad_deg": round(float(np.nanmean(m.mad.numpy())), 2),
            "yaw_slope": slope(true[:, 1], angle[:, 1]), "pitch_slope": slope(true[:, 0], angle[:, 0]),
            "yaw_abs_error_deg": round(float(np.abs(angle[:, 1] - true[:, 1]).mean()), 2),
            "yaw_frontal_abs_error_deg": round(float(np.abs(true[:, 1]).mean()), 2),
            "light_x_corr": round(float(np.corrcoef(true_x, light_x)[0, 1]), 4),
            "light_x_slope": slope(true_x, light_x),
            "light_scale": {k: [round(float(p.mean()), 4), round(float(t.mean()), 4)] for k, (p, t) in scale.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=2500)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--center", type=float, default=1.0, help="weight of the squared batch-mean rotation")
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--n-eval", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--weights", help="generator checkpoint (default: the preset's)")
    parser.add_argument("--out", help="write the trained nets here (gan2shape checkpoint)")
    parser.add_argument("--source", choices=("gan", "renders"), default="gan",
                        help="train on the generator's samples, or on the data generator's training renders")
    parser.add_argument("--prior-weight", type=float, default=0.0, help="weight of the ellipsoid term on D")
    parser.add_argument("--prior-iters", type=int, help="iterations with the ellipsoid term (default: all)")
    parser.add_argument("--nets", nargs="+", choices=TRAINED, default=list(TRAINED), help="the nets trained")
    parser.add_argument("--set", dest="extra", action="append", default=[], help="extra config override key=value")
    args = parser.parse_args()
    tune_cpu_allocator()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cfg = load_config("default", overrides=[*BASE, *args.extra])
    cpu = torch.device("cpu")
    frozen = load_frozen(cfg, cpu, Progress(json_mode=True), weights_name=args.weights)
    model, _ = build_model(cfg, frozen, cpu)
    trained = tuple(args.nets)
    model.train_only(trained)
    params = [p for name in trained for p in model.nets[name].parameters()]
    opt = torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay)
    draws = torch.Generator().manual_seed(args.seed)
    data = renders(HELD_OUT_SEED, np.arange(args.n_eval), cfg.image_size)
    curve = [{"iteration": 0, **score(model, data, trained)}]
    print(json.dumps(curve[-1]), flush=True)
    t0, running = time.perf_counter(), 0.0
    for it in range(1, args.iters + 1):
        with torch.no_grad():
            if args.source == "gan":
                images = model.gan_images(frozen.generator.sample_latents(args.batch, draws))
            else:
                picks = torch.randint(TRAINING_RENDERS, (args.batch,), generator=draws).numpy()
                images = renders(TRAINING_SEED, picks, cfg.image_size)["image"]
        out = model.predict(images, flip=True)
        loss = (sum(model.input_terms(images, out, flip=True).values())
                + args.center * out["view"][:, :3].mean(0).pow(2).sum())
        if args.prior_weight and (args.prior_iters is None or it <= args.prior_iters):
            target, ok = ellipsoids(images, cfg)
            per_image = (out["depth"][:args.batch] - target).pow(2).mean((1, 2))
            loss = loss + args.prior_weight * (per_image * ok).sum() / ok.sum().clamp_min(1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running += float(loss.detach())
        if it % args.eval_every == 0 or it == args.iters:
            curve.append({"iteration": it, "seconds": round(time.perf_counter() - t0, 1),
                          "loss": round(running / (it - curve[-1]["iteration"]), 5), **score(model, data, trained)})
            running = 0.0
            print(json.dumps(curve[-1]), flush=True)
            if args.out:
                nets.save_gan2shape_checkpoint(args.out, {name: model.nets[name] for name in TRAINED})
    print(json.dumps({"threads": args.threads, "nets": list(trained), "batch": args.batch, "center": args.center,
                      "source": args.source, "prior_weight": args.prior_weight, "prior_iters": args.prior_iters,
                      "overrides": args.extra, "generator": str(frozen.gan_path), "curve": curve}))


if __name__ == "__main__":
    main()
