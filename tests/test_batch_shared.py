"""Shared-weights group mode (§1.9) through the trainer's `grad_sync` hook and `batch --group share_weight`.

Run as a script under torchrun, this module is the worker of the two-rank test: each rank reconstructs
its own image twice, once with gradients averaged over the ranks and once independently, recording
every gradient the hook sees and the final weights.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import test_batch_assets
import test_pipeline_assets
import torch
from test_batch_assets import BAD, GOOD, ROOT, engine_args, engine_env, run_engine
from test_pipeline_assets import tiny_config

from engine import bundle
from engine.batch.distributed import finish, init_from_env
from engine.batch.group import average_gradients
from engine.cli import main
from engine.pipeline.run import Request, reconstruct
from engine.progress import Progress

batch_assets = test_batch_assets.batch_assets
tiny_assets = test_pipeline_assets.tiny_assets


class Recorder:
    """A grad_sync that keeps every parameter it is handed and, per call, the gradients before and after `sync`."""

    def __init__(self, sync=None):
        self.sync = sync
        self.params: dict[int, torch.nn.Parameter] = {}
        self.initial: dict[int, torch.Tensor] = {}
        self.local: list[list[torch.Tensor | None]] = []
        self.synced: list[list[torch.Tensor | None]] = []

    def __call__(self, params) -> None:
        params = list(params)
        for p in params:
            if id(p) not in self.params:
                self.params[id(p)], self.initial[id(p)] = p, p.detach().clone()
        self.local.append(grads(params))
        if self.sync is not None:
            self.sync(params)
        self.synced.append(grads(params))

    def changed(self) -> list[bool]:
        """Per parameter seen: did training move it away from its value when first handed over?"""
        return [not torch.equal(p.detach(), self.initial[k]) for k, p in self.params.items()]

    def final(self) -> list[torch.Tensor]:
        return [p.detach().clone() for p in self.params.values()]


def grads(params) -> list[torch.Tensor | None]:
    return [None if p.grad is None else p.grad.clone() for p in params]


def reconstruct_with(image: Path, latent: Path, gen: Path, out: Path, grad_sync, seed_offset: int = 0) -> dict:
    req = Request(image=image, out=out, cfg=tiny_config('device="cpu"'), latent=latent, weights=str(gen),
                  export=False, grad_sync=grad_sync, seed_offset=seed_offset)
    reconstruct(req, Progress(json_mode=True, out=io.StringIO(), min_interval=1e9))
    return json.loads((out / "result.json").read_text())


def optimiser_steps(result: dict) -> int:
    return sum(p["iterations"] for p in result["training"]["phases"] if p["step"] != "collect")


def test_the_optimiser_steps_with_the_gradient_grad_sync_leaves(tiny_assets, tmp_path):
    """The hook runs once per optimiser step (prior fit included) between backward and step: dropping the
    gradients there freezes every net, while a hook that leaves them alone lets training move them."""
    def drop(params):
        for p in params:
            p.grad = None

    frozen, free = Recorder(drop), Recorder()
    args = (tiny_assets["image"], tiny_assets["latent"], tiny_assets["gen"])
    result = reconstruct_with(*args, tmp_path / "frozen", frozen)
    reconstruct_with(*args, tmp_path / "free", free)
    assert len(frozen.local) == len(free.local) == optimiser_steps(result)
    assert frozen.params and not any(frozen.changed())
    assert all(g is None for call in frozen.synced for g in call)
    assert any(free.changed())


def _worker(out: Path, images: Path, latents: Path, gen: Path) -> None:
    torch.set_num_threads(1)
    ranks = init_from_env()
    name = GOOD[ranks.rank]
    report = {}
    for mode, sync in (("shared", lambda ps: average_gradients(ps, ranks.group)), ("independent", None)):
        recorder = Recorder(sync)
        result = reconstruct_with(images / f"{name}.png", latents / f"{name}.pt", gen,
                                  out / mode / f"rank{ranks.rank}", recorder, seed_offset=ranks.rank)
        report[mode] = {"local": recorder.local, "synced": recorder.synced, "final": recorder.final(),
                        "steps": optimiser_steps(result)}
    torch.save(report, out / f"rank{ranks.rank}.pt")
    finish(ranks)


def _same(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and torch.equal(a, b))


@pytest.mark.slow
def test_two_gloo_ranks_share_weights_and_step_with_the_mean_gradient(batch_assets, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           __file__, str(tmp_path), str(batch_assets["images"]), str(batch_assets["latents"]),
                           str(batch_assets["gen"])], cwd=ROOT, env=engine_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))

    shared0, shared1 = r0["shared"], r1["shared"]
    assert len(shared0["synced"]) == len(shared1["synced"]) == shared0["steps"] > 0
    assert any(not _same(a, b) for la, lb in zip(shared0["local"], shared1["local"], strict=True)
               for a, b in zip(la, lb, strict=True))  # the ranks' images give different gradients…
    for la, lb, sa, sb in zip(shared0["local"], shared1["local"], shared0["synced"], shared1["synced"], strict=True):
        for a, b, ga, gb in zip(la, lb, sa, sb, strict=True):  # …and both step with their mean
            assert _same(ga, gb)
            if a is None and b is None:
                assert ga is None
                continue
            mean = ((a if a is not None else 0) + (b if b is not None else 0)) / 2
            torch.testing.assert_close(ga, mean, rtol=1e-5, atol=1e-7)
    assert all(torch.equal(a, b) for a, b in zip(shared0["final"], shared1["final"], strict=True))

    ind0, ind1 = r0["independent"], r1["independent"]
    assert not all(torch.equal(a, b) for a, b in zip(ind0["final"], ind1["final"], strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(shared0["final"], ind0["final"], strict=True))


@pytest.mark.slow
def test_batch_group_share_weight_with_one_image_for_all_ranks_writes_each_bundle_once(batch_assets, tmp_path):
    """`independent=false` (car/church): both ranks fit the same image, rank 0 alone writes its bundle;
    an unreadable image is recorded as failed and skipped by every rank; a rerun skips the finished ones."""
    images = batch_assets["images"]
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{images / n}.png\n" for n in (GOOD[0], BAD, GOOD[1])))
    out = tmp_path / "out"
    args = ("--standalone", "--nproc_per_node", "2", "-m", "engine", "batch", str(listing), "--out", str(out),
            "--group", "share_weight", "--no-export", *engine_args(batch_assets, "--set", "independent=false"))
    for rerun in (False, True):
        proc = run_engine(*args, prefix=("torch.distributed.run",))
        assert proc.returncode == 1, proc.stderr[-3000:]  # "some images failed"
        summary = json.loads((out / "batch-summary.json").read_text())
        assert summary["group"] == "share_weight" and summary["independent"] is False
        status = "skipped" if rerun else "done"
        assert [(r["name"], r["status"], r["rank"]) for r in summary["items"]] == [
            (GOOD[0], status, 0), (BAD, "failed", 0), (GOOD[1], status, 0)]
        assert sorted(p.name for p in out.iterdir()) == sorted([GOOD[0], GOOD[1], "batch-summary.json",
                                                                "batch-summary.csv"])


@pytest.mark.slow
def test_batch_group_share_weight_with_one_image_per_rank_trains_the_group_together(batch_assets, tmp_path):
    """`independent=true` (cat/synface): ranks 0 and 1 fit images 0 and 1 with one shared model, so image 0's
    bundle differs from its plain run with the same seed; the unreadable image 2 leaves rank 0 alone."""
    images = batch_assets["images"]
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{images / n}.png\n" for n in (GOOD[0], GOOD[1], BAD)))
    single = tmp_path / "single.txt"
    single.write_text(f"{images / GOOD[0]}.png\n")
    common = ("--no-export", *engine_args(batch_assets))
    proc = run_engine("--standalone", "--nproc_per_node", "2", "-m", "engine", "batch", str(listing), "--out",
                      str(tmp_path / "group"), "--group", "share_weight", *common, prefix=("torch.distributed.run",))
    assert proc.returncode == 1, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "group" / "batch-summary.json").read_text())
    assert summary["independent"] is True
    assert [(r["name"], r["status"], r["rank"]) for r in summary["items"]] == [
        (GOOD[0], "done", 0), (GOOD[1], "done", 1), (BAD, "failed", 0)]

    assert main(["batch", str(single), "--out", str(tmp_path / "plain"), *common]) == 0
    group_bundle, plain_bundle = tmp_path / "group" / GOOD[0], tmp_path / "plain" / GOOD[0]
    depth = bundle.read(group_bundle)["files"]["depth"]
    assert not np.array_equal(np.load(group_bundle / depth), np.load(plain_bundle / depth))


if __name__ == "__main__":
    _worker(*(Path(a) for a in sys.argv[1:5]))
