"""How far the projected samples of a real bank follow the views and lights they are labelled with; prints JSON.

    python bench/bench_bank_labels.py --views FILE.pth [--n 6] [--seed 1] [--threads 1] [--weights FILE]
                                      [--set key=value ...]

For each of --n held-out renders (evaluate's seed-1 images, ground-truth masks) the `default` pipeline
(with the --set overrides) runs its own phases up to and including stage 0's collection: inversion,
prior fit, step 1, step 2, and the bank of projected samples with the view and light each pseudo sample
was rendered with. A reader, V and L taught the category's labels (`python -m engine train-views`,
--views), then reads each projection's view and light. Both are compared as changes from the input:
the reader's yaw (pitch) of a projection minus its yaw of the input, against the sampled yaw minus the
pipeline's own V's yaw of the input; slope 1 means the projection turned as labelled, 0 that it did not
turn; with the spread of the reader's yaw within each image's bank (0 if the bank holds copies). For
the light, the angle between the reader's canonical direction and the sampled one, next to the angle
between the reader's and L's mean. The reader is checked on the input itself: its yaw of the input
against the true yaw.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from engine import nets
from engine.config import load_config
from engine.data.mesh import load_base_mesh
from engine.device import tune_cpu_allocator
from engine.evaluate import EvalOptions, write_test_set
from engine.pipeline.run import Request, build_model, load_frozen, make_target, prior_depth, read_inputs, start_run
from engine.pipeline.supervise import angles_deg
from engine.pipeline.trainer import Trainer
from engine.progress import Progress

AXES = (("yaw", 1), ("pitch", 0))  # component of the renderer's view


def slope(x: np.ndarray, y: np.ndarray) -> float:
    return round(float(np.polyfit(x, y, 1)[0]), 4)


def held_out_run_args(parser: argparse.ArgumentParser) -> None:
    """The options of a bench that runs the `default` pipeline on evaluate's held-out renders."""
    parser.add_argument("--n", type=int, default=6)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--weights", help="generator checkpoint (default: the preset's)")
    parser.add_argument("--set", dest="extra", action="append", default=[], help="pipeline config override key=value")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--views", required=True, help="netV/netL checkpoint of `engine train-views` (the reader)")
    held_out_run_args(parser)
    args = parser.parse_args()
    tune_cpu_allocator()
    torch.set_num_threads(args.threads)
    cfg = load_config("default", overrides=args.extra)
    quiet, cpu = Progress(json_mode=True, out=io.StringIO()), torch.device("cpu")
    reader_cfg = load_config("default", overrides=[f'pretrain="{args.views}"'])
    reader, _ = build_model(reader_cfg, load_frozen(reader_cfg, cpu, quiet, args.weights), cpu)
    reader.train_only(())
    mean_light = nets.light_params(reader.light_mean)[2]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tests = write_test_set(cfg, EvalOptions(out=Path(tmp), n=args.n, seed=args.seed), load_base_mesh())
        for test in tests:
            t0 = time.perf_counter()
            req = Request(test.item.image, Path(tmp) / "out", cfg, mask=Path(tmp) / "test" / "masks" /
                          f"{test.item.name}.png", weights=args.weights, export=False)
            _, frozen, model, need_prior = start_run(cfg, [req], None, quiet, args.weights)
            target = make_target(req, read_inputs(req, quiet), frozen, cpu, quiet, None)
            trainer = Trainer(model, [target], cfg, seed=cfg.seed, need_prior=need_prior,
                              prior_fn=lambda t: prior_depth(t, cfg))
            for phase in trainer.phases:
                trainer.run_phase(phase)
                trainer.after_phase(phase)
                if phase.step == "collect":
                    break
            bank = trainer.banks[0]
            with torch.no_grad():
                own = model.to_transform(model.predict_view(target.image))
                read_input = reader.to_transform(reader.predict_view(target.image))
                read = reader.to_transform(reader.predict_view(bank.images))
                light = nets.light_params(reader.predict_light(bank.images))[2]
            sampled = model.to_transform(bank.views)
            rows.append({
                "name": test.item.name, "seconds": round(time.perf_counter() - t0, 1),
                "true_yaw": round(float(np.degrees(test.view[1])), 2),
                "reader_input_yaw": round(float(torch.rad2deg(read_input[0, 1])), 2),
                "pipeline_input_yaw": round(float(torch.rad2deg(own[0, 1])), 2),
                "sampled": {k: torch.rad2deg(sampled[:, i] - own[0, i]).tolist() for k, i in AXES},
                "read": {k: torch.rad2deg(read[:, i] - read_input[0, i]).tolist() for k, i in AXES},
                "light_error_deg": angles_deg(light, nets.light_params(bank.lights)[2]).tolist(),
                "light_vs_mean_deg": angles_deg(light, mean_light.expand_as(light)).tolist(),
            })
            print(json.dumps({k: v for k, v in rows[-1].items() if not isinstance(v, dict | list)}), flush=True)
    summary = {}
    for k in ("yaw", "pitch"):
        x = np.concatenate([r["sampled"][k] for r in rows])
        y = np.concatenate([r["read"][k] for r in rows])
        summary[k] = {"slope": slope(x, y), "corr": round(float(np.corrcoef(x, y)[0, 1]), 4),
                      "sampled_mean_abs_deg": round(float(np.abs(x).mean()), 2),
                      "read_mean_abs_deg": round(float(np.abs(y).mean()), 2),
                      "read_std_within_bank_deg": round(float(np.mean([np.std(r["read"][k]) for r in rows])), 2)}
    light = np.concatenate([r["light_error_deg"] for r in rows])
    mean = np.concatenate([r["light_vs_mean_deg"] for r in rows])
    true, read_in = np.array([r["true_yaw"] for r in rows]), np.array([r["reader_input_yaw"] for r in rows])
    summary["light_direction"] = {"read_vs_sampled_deg": round(float(light.mean()), 2),
                                  "read_vs_mean_deg": round(float(mean.mean()), 2)}
    summary["reader_on_inputs"] = {"yaw_mean_abs_error_deg": round(float(np.abs(read_in - true).mean()), 2),
                                   "true_yaw_mean_abs_deg": round(float(np.abs(true).mean()), 2)}
    print(json.dumps({"n": args.n, "seed": args.seed, "bank_size": len(rows[0]["light_error_deg"]),
                      "overrides": args.extra, "views": args.views, **summary}))


if __name__ == "__main__":
    main()
