"""What step 3's gradient on the depth is made of, term by term, and whether each term pulls towards the truth.

    python bench/bench_step3_gradients.py [--every 40] [--n 6] [--seed 1] [--threads 1] [--weights FILE]
                                          [--set key=value ...]
    python bench/bench_step3_gradients.py --summarise RUN.jsonl   # the summary of an earlier run's output

Why: started from the truth, the preset's step 3 leaves it, and what the bank holds barely changes where it
ends (model card items 15 and 17). This bench runs the `default` pipeline on held-out renders up to stage 0's
step 3 and trains that step 3 as the pipeline does; every --every iterations (and at its end) it evaluates the
step-3 loss over the whole bank, split by term (`Model.step3_forward`'s out["terms"]: the input, its mirrored
twin, the smoothness, the bank and the bank's mirrored twin), and differentiates each term with respect to
the canonical depth map D returns (the two mirrored copies summed). For each term it prints:

- `norm`: the gradient's L2 norm over the map;
- `toward_truth`: on D's weights, the cosine between the term's descent direction (minus its gradient) and
  the descent of the MSE between D's depth and the exact canonical depth on the truth's object pixels, both
  less their mean there (SIDE ignores the offset, which would otherwise dominate): positive pulls the shape
  towards the truth, negative away from it;
- `toward_truth_map`: the same on the depth map itself, against the step truth minus depth, mean-free on
  the object (per pixel, so it sees the terms' fine detail that D's weights smooth away);
- `share`: the term's part of the total descent on D's weights along the total's own direction (the shares
  sum to 1).

The summary line gives these per probe (means over the images) and over every probe of every image (with
how many were positive). The depth the model gives the input is scored at the same moments (SIDE ×10⁻², MAD, and
bench_depth_agreement's correlation and slope), as bench_truth_start.py scores it.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from bench_bank_labels import held_out_run_args
from bench_truth_start import depth_scores, held_out_trainers, run_to_first_step3

from engine.config import load_config
from engine.device import tune_cpu_allocator
from engine.metrics import gt_mask
from engine.pipeline.model import mirror
from engine.pipeline.trainer import Phase, Trainer


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return round(float((a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-30)), 4)


def mean_free(x: torch.Tensor) -> torch.Tensor:
    return x - x.mean()


def term_gradients(trainer: Trainer, phase: Phase, truth: torch.Tensor) -> dict[str, dict[str, float]]:
    """Each step-3 term's gradient over the whole bank, on D's canonical depth map and on D's weights, against
    the way to the truth."""
    model, target = trainer.model, trainer.targets[0]
    bank = trainer.banks[0]
    images, masks, views, lights = (t.to(model.device) for t in (bank.images, bank.masks, bank.views, bank.lights))
    _, out = model.step3_forward(target, images, masks, phase.flip1, phase.flip3, views, lights)
    depth, weights = out["depth"], list(model.nets["netD"].parameters())
    on_object = gt_mask(truth[0]).to(depth.device)
    miss = mean_free((depth[0] - truth[0])[on_object])  # the offset, which SIDE ignores, would dominate
    toward_map = -miss.detach()
    truth_loss = miss.pow(2).mean()
    toward_weights = -torch.cat([g.flatten() for g in torch.autograd.grad(truth_loss, weights, retain_graph=True)])
    on_map, on_weights = {}, {}
    for name, term in out["terms"].items():
        if not term.requires_grad:
            continue
        g, *gw = torch.autograd.grad(term, [depth, *weights], retain_graph=True, allow_unused=True)
        if g is None:
            continue
        on_map[name] = g[0] + mirror(g[1:2])[0] if g.shape[0] == 2 else g[0]
        on_weights[name] = torch.cat([(w if w is not None else torch.zeros_like(p)).flatten()
                                      for w, p in zip(gw, weights, strict=True)])
    on_map["total"], on_weights["total"] = sum(on_map.values()), sum(on_weights.values())
    total_sq = on_weights["total"].pow(2).sum().clamp_min(1e-30)
    return {name: {"norm": round(float(on_map[name].norm()), 4),
                   "toward_truth_map": cosine(-mean_free(on_map[name][on_object]), toward_map),
                   "toward_truth": cosine(-on_weights[name], toward_weights),
                   "share": round(float((on_weights[name] * on_weights["total"]).sum() / total_sq), 4)}
            for name in on_map}


def train_step3(trainer: Trainer, phase: Phase, truth: torch.Tensor, depth_gt: np.ndarray, cfg,
                every: int) -> list[dict]:
    """Stage 0's step 3 as the pipeline trains it, probed before its first step, every `every` steps and after
    its last."""
    probes = []

    def probe(step: int) -> None:
        if step % every and step != phase.iterations:
            return
        trainer.model.train_only(phase.nets)
        probes.append({"iteration": step, "terms": term_gradients(trainer, phase, truth),
                       **depth_scores(trainer, depth_gt, cfg)})
        trainer.model.train_only(phase.nets)

    probe(0)
    trainer.run_phase(phase, after_step=probe)
    return probes


def summary(rows: list[dict]) -> dict:
    """Means over the images at each probe, and over every probe of every image (with the positive counts)."""
    means = []
    for i, probe in enumerate(rows[0]["probes"]):
        at = [r["probes"][i] for r in rows]
        terms = {name: {k: round(float(np.mean([p["terms"][name][k] for p in at])), 4) for k in stats}
                 for name, stats in probe["terms"].items()}
        scores = {k: round(float(np.mean([p[k] for p in at])), 4)
                  for k in ("side_x100", "mad_deg", "correlation", "slope")}
        means.append({"iteration": probe["iteration"], **scores, "terms": terms})
    every_probe = [p for r in rows for p in r["probes"]]
    overall = {}
    for name in every_probe[0]["terms"]:
        values = {k: [p["terms"][name][k] for p in every_probe] for k in ("toward_truth", "toward_truth_map", "share")}
        overall[name] = {k: round(float(np.mean(v)), 4) for k, v in values.items()}
        overall[name].update(positive=sum(v > 0 for v in values["toward_truth"]),
                             positive_map=sum(v > 0 for v in values["toward_truth_map"]))
    return {"images": len(rows), "probes": len(every_probe), "mean_over_probes": overall, "mean_over_images": means}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--every", type=int, default=40, help="step-3 iterations between probes")
    parser.add_argument("--background", type=float, default=1.05, help="canonical depth of the truth's background")
    parser.add_argument("--summarise", metavar="FILE", help="only summarise the per-image lines of an earlier run")
    held_out_run_args(parser)
    args = parser.parse_args()
    if args.summarise:
        with open(args.summarise) as f:
            rows = [row for row in map(json.loads, f) if "probes" in row and isinstance(row["probes"], list)]
        print(json.dumps({"from": args.summarise, **summary(rows)}))
        return
    tune_cpu_allocator()
    torch.set_num_threads(args.threads)
    cfg = load_config("default", overrides=args.extra)
    rows = []
    for test, truth, trainer, t0 in held_out_trainers(cfg, args):
        probes = train_step3(trainer, run_to_first_step3(trainer), truth, test.depth, cfg, args.every)
        rows.append({"name": test.item.name, "seconds": round(time.perf_counter() - t0, 1), "probes": probes})
        print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"n": args.n, "seed": args.seed, "every": args.every, "overrides": args.extra,
                      "weights": args.weights, **summary(rows)}))


if __name__ == "__main__":
    main()
