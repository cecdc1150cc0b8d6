"""GAN training: a few tiny steps make loadable checkpoints and a resumed run equals an uninterrupted one."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from engine.errors import EngineError
from engine.gan.checkpoint import load_checkpoint
from engine.gan.train import RealImages, TrainConfig, TrainState, load_or_start, train

TINY = TrainConfig(size=16, channel_max=8, style_dim=16, n_mlp=2, batch=4, d_reg_every=2)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def reals() -> RealImages:
    rng = np.random.default_rng(0)
    return RealImages(rng.integers(0, 256, (12, 16, 16, 3), dtype=np.uint8), xflip=True)


def _assert_same_state(a: TrainState, b: TrainState) -> None:
    for name in ("g", "d", "g_ema"):
        sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert sa.keys() == sb.keys()
        for key in sa:
            torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=0, msg=f"{name}.{key}")
    for name in ("g_opt", "d_opt"):
        oa, ob = getattr(a, name).state_dict()["state"], getattr(b, name).state_dict()["state"]
        for idx in oa:
            for key in ("exp_avg", "exp_avg_sq"):
                torch.testing.assert_close(oa[idx][key], ob[idx][key], rtol=0, atol=0)
    assert (a.step, a.images_seen) == (b.step, b.images_seen)


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path, reals):
    straight = train(TrainState.fresh(TINY), reals, tmp_path / "a", None, max_images=16)
    assert straight.step == 4

    first = train(TrainState.fresh(TINY), reals, tmp_path / "b", tmp_path / "b" / "generator.pt", max_images=8)
    assert first.step == 2
    resumed, how = load_or_start(TINY, tmp_path / "b", None)
    assert how == "resumed"
    _assert_same_state(first, resumed)
    resumed = train(resumed, reals, tmp_path / "b", None, max_images=16)
    _assert_same_state(straight, resumed)
    assert not torch.equal(straight.g.style[1].weight, TrainState.fresh(TINY).g.style[1].weight), "training moved G"


def test_export_is_a_loadable_rosinality_checkpoint_and_a_warm_start(tmp_path, reals):
    export = tmp_path / "weights" / "generator.pt"
    state = train(TrainState.fresh(TINY), reals, tmp_path / "state", export, max_images=8)
    assert (tmp_path / "state" / "samples" / "images-000000008.png").is_file()
    ckpt = load_checkpoint(export)
    assert ckpt.arch == TINY.arch() and ckpt.discriminator is not None and ckpt.latent_avg is not None
    for key, value in state.g_ema.state_dict().items():
        torch.testing.assert_close(ckpt.generator.state_dict()[key], value, rtol=0, atol=0)
    z = torch.randn(2, TINY.style_dim)
    torch.testing.assert_close(ckpt.generator(ckpt.generator.mapping(z)), state.g_ema(state.g_ema.mapping(z)))

    (tmp_path / "state" / "state.pt").unlink()  # the cache is gone: continue from the export alone
    warm, how = load_or_start(TINY, tmp_path / "state", export)
    assert how.startswith("warm-started")
    assert (warm.step, warm.images_seen) == (state.step, state.images_seen)
    for key, value in state.d.state_dict().items():
        torch.testing.assert_close(warm.d.state_dict()[key], value, rtol=0, atol=0)
    warm = train(warm, reals, tmp_path / "state", export, max_images=12)
    assert warm.images_seen == 12


def test_resume_refuses_a_different_config(tmp_path, reals):
    train(TrainState.fresh(TINY), reals, tmp_path, None, max_images=4)
    other = TrainConfig(**{**TINY.__dict__, "channel_max": 16})
    with pytest.raises(EngineError, match="another config"):
        load_or_start(other, tmp_path, None)


@pytest.mark.slow
def test_cli_generates_data_trains_resumes_and_writes_a_grid(tmp_path, capsys):
    from engine.cli import main

    try:
        from engine.data.mesh import load_base_mesh

        load_base_mesh()
    except EngineError as exc:
        pytest.skip(str(exc))
    common = ["--data", str(tmp_path / "data"), "--n-data", "6", "--state-dir", str(tmp_path / "state"),
              "--export", str(tmp_path / "generator.pt"), "--size", "16", "--channel-max", "8", "--batch", "2",
              "--threads", "1"]
    assert main(["train-gan", *common, "--max-images", "4"]) == 0
    assert (tmp_path / "data" / "manifest.json").is_file(), "missing data is generated first"
    assert main(["train-gan", *common, "--max-images", "6", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"how": "resumed"' in out and '"images_seen": 6' in out
    assert load_checkpoint(tmp_path / "generator.pt").arch.channel_max == 8
    assert main(["train-gan", "--export", str(tmp_path / "generator.pt"), "--grid", str(tmp_path / "g.png")]) == 0
    assert (tmp_path / "g.png").stat().st_size > 0
    from engine.losses import find_mobilenet_weights

    if find_mobilenet_weights() is not None:
        capsys.readouterr()
        assert main(["train-gan", *common, "--quality", "4"]) == 0
        quality = json.loads(capsys.readouterr().out)
        assert quality["n"] == 4 and quality["kid_x1000_generator"]["mean"] > quality["kid_x1000_training_data"]["mean"]
    wrong_size = ["train-gan", "--data", str(tmp_path / "data"), "--state-dir", str(tmp_path / "other"),
                  "--export", str(tmp_path / "other.pt"), "--size", "32"]
    assert main(wrong_size) == 2  # the data set is 16², not 32²: one error line, exit code 2


def test_real_batches_are_nchw_in_range_and_flipped_half_the_time():
    rgb = np.random.default_rng(1).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    plain = RealImages(rgb, xflip=False).batch(8)
    assert plain.shape == (8, 3, 16, 16) and float(plain.min()) >= -1 and float(plain.max()) <= 1
    expected = torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert all(any(torch.equal(x, e) for e in expected) for x in plain)
    torch.manual_seed(0)
    flipped = RealImages(rgb, xflip=True).batch(400)
    n_flipped = sum(any(torch.equal(x, e.flip(2)) for e in expected) for x in flipped)
    assert 150 < n_flipped < 250
