"""`python -m engine sample`: PNGs plus {'latent': w} files that reproduce them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.cli import main
from engine.commands.sample import to_uint8
from engine.gan import Generator, StyleGAN2Arch, load_generator, save_checkpoint

ARCH = StyleGAN2Arch(16, style_dim=16, n_mlp=2, channel_max=8)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "g.pt"
    save_checkpoint(path, Generator(ARCH))
    return path


def test_sample_writes_images_and_reproducible_latents(weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "samples"
    common = ["sample", "--weights", str(weights), "--n", "3", "--seed", "5", "--truncation", "0.7",
              "--truncation-mean", "64"]
    assert main([*common, "--out", str(out), "--batch", "2"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"00000{i}.{e}" for i in range(3) for e in ("png", "pt")]
    gen = load_generator(weights)
    latents = []
    for i in range(3):
        data = torch.load(out / f"00000{i}.pt", weights_only=True)
        assert set(data) == {"latent"} and data["latent"].shape == (16,)
        latents.append(data["latent"])
        with torch.no_grad():
            rendered = to_uint8(gen.synthesize(data["latent"][None])[0])
        assert np.array_equal(np.asarray(Image.open(out / f"00000{i}.png")), rendered)
    # deterministic for a seed, and truncated towards the mean latent of the seed+1 stream
    again = tmp_path / "again"
    assert main([*common, "--out", str(again), "--batch", "3"]) == 0
    assert torch.allclose(torch.load(again / "000001.pt", weights_only=True)["latent"], latents[1], atol=1e-6)
    w_avg = gen.mean_latent(64, torch.Generator().manual_seed(6))
    raw = gen.sample_latents(3, torch.Generator().manual_seed(5))
    assert torch.allclose(torch.stack(latents), w_avg + 0.7 * (raw - w_avg), atol=1e-6)


def test_sample_json_events_and_bad_weights(weights: Path, tmp_path: Path, capsys) -> None:
    assert main(["sample", "--weights", str(weights), "--n", "1", "--out", str(tmp_path / "o"), "--json",
                 "--truncation-mean", "8"]) == 0
    events = capsys.readouterr().out.strip().splitlines()
    assert '"event": "start"' in events[0] and '"event": "result"' in events[-1]
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["sample", "--weights", str(bad), "--out", str(tmp_path / "x")]) == 2
    assert "not a readable torch checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
