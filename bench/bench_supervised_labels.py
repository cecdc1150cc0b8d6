"""How well V and L learn the view and light from the data generator's labelled renders; prints JSON.

    python bench/bench_supervised_labels.py [--iters 3000] [--batch 32] [--lr 1e-3] [--pool 8000]
                                            [--eval-every 500] [--n-eval 100] [--threads 1] [--out FILE.pth]

Runs `supervise.train_on_labels` (what `python -m engine train-views` runs) and scores the nets every
--eval-every iterations on --n-eval held-out seed-1 renders: "label_error" (`supervise.label_errors`:
mean absolute yaw, pitch and canonical light direction errors in degrees, the direction's next to always
answering L's mean; k_a, k_d) and bench_symmetric_pretrain's figures (slopes of predicted on true yaw
and pitch, mean |yaw error| next to always answering frontal, light x correlation and slope against the
camera-frame light, the light's scale; its depth figures are of an untrained D and mean nothing here).
--out writes netV and netL as a gan2shape checkpoint at every evaluation (usable as --set pretrain=FILE).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict

import numpy as np
import torch
from bench_symmetric_pretrain import HELD_OUT_SEED, renders, score

from engine import nets
from engine.config import load_config
from engine.device import tune_cpu_allocator
from engine.evaluate import TRAINING_SEED
from engine.pipeline.run import build_model, load_frozen
from engine.pipeline.supervise import GROUPS, LabelTraining, label_errors, labelled_renders, train_on_labels
from engine.progress import Progress


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = LabelTraining()
    parser.add_argument("--iters", type=int, default=defaults.iters)
    parser.add_argument("--batch", type=int, default=defaults.batch)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--pool", type=int, default=defaults.pool)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--n-eval", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="write netV and netL here (gan2shape checkpoint)")
    parser.add_argument("--set", dest="extra", action="append", default=[], help="extra config override key=value")
    args = parser.parse_args()
    tune_cpu_allocator()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    opts = LabelTraining(args.iters, args.batch, args.lr, args.pool, args.seed)
    cfg = load_config("default", overrides=['perceptual="mobilenet-v2"', 'pretrain="none"', *args.extra])
    cpu = torch.device("cpu")
    model, _ = build_model(cfg, load_frozen(cfg, cpu, Progress(json_mode=True)), cpu)
    t0 = time.perf_counter()
    pool = labelled_renders(cfg, TRAINING_SEED, np.arange(args.pool))
    render_s = round(time.perf_counter() - t0, 1)
    data = renders(HELD_OUT_SEED, np.arange(args.n_eval), cfg.image_size)
    held_out = labelled_renders(cfg, HELD_OUT_SEED, np.arange(args.n_eval))

    def evaluation(it: int) -> dict:
        scores = score(model, data, GROUPS["views"])  # hands training back to V and L
        return {"iteration": it, "label_error": label_errors(model, held_out), **scores}

    curve = [evaluation(0)]
    print(json.dumps(curve[-1]), flush=True)
    t0, running = time.perf_counter(), []

    def on_step(it: int, loss: float) -> None:
        running.append(loss)
        if it % args.eval_every == 0 or it == args.iters:
            curve.append({"seconds": round(time.perf_counter() - t0, 1), "loss": round(float(np.mean(running)), 5),
                          **evaluation(it)})
            running.clear()
            print(json.dumps(curve[-1]), flush=True)
            if args.out:
                nets.save_gan2shape_checkpoint(args.out, {name: model.nets[name] for name in GROUPS["views"]})

    train_on_labels(model, pool, opts, on_step)
    print(json.dumps({"threads": args.threads, **asdict(opts), "render_seconds": render_s,
                      "overrides": args.extra, "curve": curve}))


if __name__ == "__main__":
    main()
