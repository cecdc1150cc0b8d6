"""An interrupted batch leaves only complete bundles; rerun, it skips them and ends identical to an
uninterrupted run. What counts as complete: same input bytes, same resolved config."""

import json
import signal
import subprocess
import time

import pytest
import test_batch_assets
from test_batch_assets import BAD, GOOD, PYTHON, ROOT, assert_same_bundle, engine_args, engine_env, run_engine
from test_pipeline_assets import tiny_config

from engine.batch import is_complete, make_items
from engine.batch.items import list_images
from engine.batch.work import BatchJob

batch_assets = test_batch_assets.batch_assets
reference_batch = test_batch_assets.reference_batch
pytestmark = pytest.mark.slow


def summary_of(out):
    return json.loads((out / "batch-summary.json").read_text())


def wait_for_done(out, proc, count: int, timeout: float = 240.0) -> dict:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if (out / "batch-summary.json").is_file():
            summary = summary_of(out)
            if summary["counts"]["done"] >= count:
                return summary
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    raise AssertionError("the batch did not get going")


def test_ctrl_c_then_rerun_skips_finished_items_and_matches_an_uninterrupted_run(batch_assets, reference_batch,
                                                                                   tmp_path):
    out = tmp_path / "out"
    argv = [PYTHON, "-m", "engine", "batch", str(batch_assets["images"]), "--out", str(out),
            *engine_args(batch_assets)]
    proc = subprocess.Popen(argv, cwd=ROOT, env=engine_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    wait_for_done(out, proc, 2)
    proc.send_signal(signal.SIGINT)  # Ctrl-C while the next image is being reconstructed
    assert proc.wait(120) == 130

    first = summary_of(out)
    finished = sorted(r["name"] for r in first["items"] if r["status"] == "done")
    assert len(finished) >= 2 and first["counts"]["pending"] >= 1  # stopped half-way, summary kept
    bundles = [p for p in out.iterdir() if p.is_dir()]
    assert sorted(p.name for p in bundles) == finished  # only complete bundles …
    assert not [p for p in out.iterdir() if p.is_dir() and p.name.startswith(".")]  # … and no partial one

    second = run_engine("batch", str(batch_assets["images"]), "--out", str(out), *engine_args(batch_assets))
    assert second.returncode == 1, second.stderr  # the corrupt image still fails
    items = {r["name"]: r for r in summary_of(out)["items"]}
    assert sorted(n for n, r in items.items() if r["status"] == "skipped") == finished
    assert sorted(n for n, r in items.items() if r["status"] == "done") == sorted(set(GOOD) - set(finished))
    assert items[BAD]["status"] == "failed"
    reference, _ = reference_batch
    for name in GOOD:
        assert_same_bundle(reference / name, out / name)
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_a_bundle_is_complete_only_for_the_same_input_and_config(batch_assets, reference_batch, tmp_path):
    reference, _ = reference_batch
    images = list_images(batch_assets["images"])
    item = next(i for i in make_items(images) if i.name == "cat")
    cfg = tiny_config('device="cpu"')  # what engine_args asks for
    job = BatchJob(cfg, reference, batch_assets["gen"].resolve(), latent_dir=batch_assets["latents"])
    assert is_complete(item, job) is not None
    cfg.device = "cuda"  # another rank's device does not change what the bundle is
    assert is_complete(item, job) is not None
    cfg.seed += 1
    assert is_complete(item, job) is None
    cfg.seed -= 1
    assert is_complete(item, BatchJob(cfg, reference, batch_assets["gen"].resolve())) is None  # no latent file
    changed = tmp_path / "cat.png"
    changed.write_bytes(item.image.read_bytes() + b"\0")
    moved = make_items([changed])[0]
    assert is_complete(moved, BatchJob(cfg, reference, batch_assets["gen"].resolve(),
                                       latent_dir=batch_assets["latents"])) is None
