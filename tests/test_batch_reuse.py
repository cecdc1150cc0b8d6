"""A batch worker reuses the frozen models (generator, perceptual net) across images without changing any output."""

import io

import pytest
import test_batch_assets
import torch
from test_batch_assets import GOOD, assert_same_bundle
from test_pipeline_assets import tiny_config

from engine.batch.items import BatchItem
from engine.batch.work import BatchJob, run_item
from engine.pipeline.run import forget_frozen, load_frozen
from engine.progress import Progress

batch_assets = test_batch_assets.batch_assets


def load(cfg, gen, seed: int):
    """load_frozen from a seeded RNG, and the next random draw (what the nets' initialisation would see)."""
    torch.manual_seed(seed)
    frozen = load_frozen(cfg, torch.device("cpu"), Progress(json_mode=True, out=io.StringIO()), str(gen))
    return frozen, torch.rand(4)


def test_load_frozen_reuses_the_models_and_leaves_the_rng_as_a_fresh_load_would(batch_assets):
    cfg = tiny_config('device="cpu"')
    forget_frozen()
    fresh, draw = load(cfg, batch_assets["gen"], 3)
    again, draw_again = load(cfg, batch_assets["gen"], 3)
    assert again is fresh and torch.equal(draw_again, draw)
    other, draw_other = load(cfg, batch_assets["gen"], 4)  # another RNG state: loaded again, not replayed
    assert other is not fresh and not torch.equal(draw_other, draw)
    forget_frozen()
    reloaded, draw_reloaded = load(cfg, batch_assets["gen"], 3)
    assert reloaded is not fresh and torch.equal(draw_reloaded, draw)
    forget_frozen()


@pytest.mark.slow
def test_an_image_after_another_gives_the_bundle_of_a_fresh_process(batch_assets, tmp_path):
    job = BatchJob(tiny_config('device="cpu"'), tmp_path / "reused", batch_assets["gen"].resolve(),
                   latent_dir=batch_assets["latents"])
    first, second = (BatchItem(i, n, batch_assets["images"] / f"{n}.png") for i, n in enumerate(GOOD[:2]))
    forget_frozen()
    assert run_item(first, job)["status"] == "done"
    assert run_item(second, job)["status"] == "done"  # with the first image's models
    forget_frozen()
    fresh = BatchJob(job.cfg, tmp_path / "fresh", job.gan_path, latent_dir=job.latent_dir)
    assert run_item(second, fresh)["status"] == "done"
    forget_frozen()
    assert_same_bundle(tmp_path / "reused" / second.name, tmp_path / "fresh" / second.name)
