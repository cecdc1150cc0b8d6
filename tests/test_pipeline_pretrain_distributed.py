"""`pretrain` under torchrun (2 gloo CPU ranks): sharded images, averaged gradients, one checkpoint, resume.

Run as a script under torchrun, this module is the worker of the library-level tests: MODE `grad` records
the gradients the trainer hands to the averaging hook and the final weights, then runs an interrupted and
resumed pre-training; MODE `crash` makes rank 1 fail in the middle of training.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import test_batch_assets
import torch
from test_batch_assets import BAD, GOOD, engine_args, run_engine
from test_batch_shared import Recorder
from test_pipeline_assets import tiny_config

from engine import nets
from engine.batch.distributed import finish, init_from_env
from engine.batch.group import average_gradients, mean_gradients, weights_digest
from engine.batch.rank_state import RankStates
from engine.pipeline.run import Request, make_target, pretrain, read_inputs, start_run
from engine.pipeline.trainer import plan
from engine.progress import Progress

batch_assets = test_batch_assets.batch_assets
STOP = 2  # the grad worker's interrupted run stops after phase 2 (collect) with rank 1 one phase behind
TIMEOUT_S = 180


class Interrupted(Exception):
    pass


def quiet() -> Progress:
    return Progress(json_mode=True, out=io.StringIO(), min_interval=1e9)


def worker_config():
    """The tiny config without the ellipsoid fit, so the first optimiser step is step 1's (netA alone)."""
    cfg = tiny_config('device="cpu"', "prior_fit_iters=0")
    cfg.joint_train, cfg.reset_weight = True, False  # as the pretrain command sets them
    return cfg


def requests(cfg, out: Path, gen: Path, images: Path, latents: Path, names) -> list[Request]:
    return [Request(image=images / f"{n}.png", out=out, cfg=cfg, latent=latents / f"{n}.pt", weights=str(gen),
                    export=False) for n in names]


def replace_bytes(path: Path, data: bytes) -> None:
    """A new file at `path` (never writing through a hard link the state files may share)."""
    tmp = path.with_name(path.name + ".test")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _grad_worker(ranks, out: Path, reqs) -> None:
    recorder = Recorder(lambda params: average_gradients(params, ranks.group))
    pretrain(reqs, out / "full.pth", quiet(), ranks=ranks, grad_sync=recorder)

    # Interrupted after phase STOP as if stopped while saving: rank 0 has saved phase STOP but still holds
    # the previous phase as committed, rank 1 only the previous phase; the resumed run must restart both
    # at phase STOP and end where the uninterrupted run ended.
    resumed = out / "resumed.pth"
    states, aside, ran = RankStates(resumed, ranks), {}, []

    def stop(index: int, _phase) -> None:
        if index == STOP - 1:
            aside["state"] = states.committed.read_bytes()
        if index == STOP:
            replace_bytes(states.committed, aside["state"])
            if ranks.rank == 1:
                replace_bytes(states.latest, aside["state"])
            raise Interrupted

    with pytest.raises(Interrupted):
        pretrain(reqs, resumed, quiet(), ranks=ranks, on_phase_end=stop)
    pretrain(reqs, resumed, quiet(), resume=True, ranks=ranks, on_phase_end=lambda i, _p: ran.append(i))
    torch.save({"local": recorder.local[0], "synced": recorder.synced[0], "steps": len(recorder.local),
                "final": recorder.final(), "resumed_phases": ran}, out / f"rank{ranks.rank}.pt")


def _crash_worker(ranks, out: Path, reqs) -> None:
    def fail(index: int, _phase) -> None:
        if ranks.rank == 1 and index == 0:
            raise RuntimeError("rank 1 breaks down in the middle of training")

    pretrain(reqs, out / "crash.pth", quiet(), ranks=ranks, on_phase_end=fail)


def _worker(mode: str, out: Path, gen: Path, images: Path, latents: Path) -> None:
    torch.set_num_threads(1)
    ranks = init_from_env()
    reqs = requests(worker_config(), out / "unused", gen, images, latents, GOOD[:2])
    try:
        (_grad_worker if mode == "grad" else _crash_worker)(ranks, out, reqs)
    except BaseException:
        finish(ranks, barrier=False)
        raise
    finish(ranks)


def pretrain_args(assets: dict[str, Path]) -> list[str]:
    """The batch tests' tiny CPU options, with pretrain's name for the latent folder."""
    args = engine_args(assets)
    args[args.index("--latent")] = "--latent-dir"
    return args


def run_worker(mode: str, assets: dict[str, Path], out: Path) -> subprocess.CompletedProcess:
    return run_engine("--standalone", "--nproc_per_node", "2", __file__, mode, str(out), str(assets["gen"]),
                      str(assets["images"]), str(assets["latents"]), prefix=("torch.distributed.run",),
                      timeout=TIMEOUT_S)


def state_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def load_nets(path: Path) -> dict[str, torch.Tensor]:
    data = torch.load(path, map_location="cpu", weights_only=True)
    return {f"{n}.{k}": v for n in nets.NET_NAMES for k, v in data[n].items()}


@pytest.mark.slow
def test_torchrun_pretrain_shards_the_list_and_rank_0_writes_the_one_checkpoint(batch_assets, tmp_path):
    images = [batch_assets["images"] / f"{n}.png" for n in GOOD[:3]]
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{p}\n" for p in images))
    ckpt = tmp_path / "ckpt" / "joint.pth"
    proc = run_engine("--standalone", "--nproc_per_node", "2", "-m", "engine", "pretrain", "--list", str(listing),
                      "--out", str(ckpt), "--json", *pretrain_args(batch_assets),
                      prefix=("torch.distributed.run",), timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    (start,) = [e for e in events if e["event"] == "start"]  # rank 0 alone reports
    assert (start["rank"], start["world_size"], start["images"], start["all_images"]) == (0, 2, 2, 3)
    results = [e for e in events if e["event"] == "result"]
    assert results == [{"event": "result", "checkpoint": str(ckpt.resolve()), "images": 3, "world_size": 2}]
    assert os.listdir(ckpt.parent) == ["joint.pth"]  # no state files, temporaries or second checkpoint

    meta = torch.load(ckpt, map_location="cpu", weights_only=True)["meta"]
    wanted = [str(p.resolve()) for p in images]
    shards = meta["distributed"]["shards"]
    assert shards == [[wanted[0], wanted[2]], [wanted[1]]]  # what each rank actually read: disjoint, complete
    assert meta["images"] == wanted and meta["distributed"]["world_size"] == 2
    assert weights_digest(load_nets(ckpt)) == meta["distributed"]["nets_sha256"]  # what every rank held


@pytest.mark.slow
def test_two_ranks_step_with_the_mean_gradient_of_their_images_and_resume_together(batch_assets, tmp_path):
    proc = run_worker("grad", batch_assets, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))

    # the reference in one process: the same initial nets, each image's step-1 loss, mean_gradients
    cfg = worker_config()
    reqs = requests(cfg, tmp_path / "unused", batch_assets["gen"], batch_assets["images"], batch_assets["latents"],
                    GOOD[:2])
    _, frozen, model, need_prior = start_run(cfg, reqs, None, quiet(), str(batch_assets["gen"]))
    targets = [make_target(r, read_inputs(r, quiet()), frozen, model.device, quiet(), None) for r in reqs]
    first = plan(cfg, 1, need_prior)[0]
    assert first.step == "step1" and first.nets == ("netA",)
    model.train_only(first.nets)
    params = list(model.nets["netA"].parameters())

    def grads_of(*chosen) -> list[torch.Tensor]:
        mean_gradients(params, [lambda t=t: model.step1_forward(t, first.flip1)[0] for t in chosen])
        return [p.grad.clone() for p in params]

    def same(got: list[torch.Tensor], expected: list[torch.Tensor]) -> bool:
        """Equal up to summation order: the ranks run on one thread each, this reference on the suite's threads."""
        return all(torch.allclose(g, e, rtol=1e-4, atol=1e-4 * float(e.abs().max()))
                   for g, e in zip(got, expected, strict=True))

    own = [grads_of(t) for t in targets]
    mean = grads_of(*targets)
    assert not same(own[0], own[1]) and not same(own[0], mean)  # the tolerance still tells the images apart
    for rank, record in enumerate((r0, r1)):
        assert len(record["local"]) == len(params)
        assert same(record["local"], own[rank])  # rank r trained image r only
        assert same(record["synced"], mean)  # …and stepped with the mean

    assert r0["steps"] == r1["steps"] > 1
    assert all(torch.equal(a, b) for a, b in zip(r0["final"], r1["final"], strict=True))

    full, resumed = load_nets(tmp_path / "full.pth"), load_nets(tmp_path / "resumed.pth")
    assert r0["resumed_phases"] == r1["resumed_phases"] == [STOP, STOP + 1]  # rank 0 went back one phase
    assert full.keys() == resumed.keys() and all(torch.equal(full[k], resumed[k]) for k in full)
    assert state_files(tmp_path) == []


@pytest.mark.slow
def test_a_failing_rank_ends_the_job_with_its_error_instead_of_a_hang(batch_assets, tmp_path):
    images = batch_assets["images"]
    listing = tmp_path / "list.txt"
    listing.write_text(f"{images / GOOD[0]}.png\n{images / BAD}.png\n")  # rank 1 gets the corrupt image
    out = tmp_path / "joint.pth"
    proc = run_engine("--standalone", "--nproc_per_node", "2", "-m", "engine", "pretrain", "--list", str(listing),
                      "--out", str(out), *pretrain_args(batch_assets), prefix=("torch.distributed.run",),
                      timeout=TIMEOUT_S)
    assert proc.returncode != 0
    assert f"{BAD}.png" in proc.stderr and "rank 1 failed while reading its images" in proc.stderr
    assert not out.exists()

    crashed = tmp_path / "crash"
    crashed.mkdir()
    proc = run_worker("crash", batch_assets, crashed)
    assert proc.returncode != 0 and "rank 1 breaks down in the middle of training" in proc.stderr
    assert not (crashed / "crash.pth").exists()


if __name__ == "__main__":
    _worker(sys.argv[1], *(Path(a) for a in sys.argv[2:6]))
