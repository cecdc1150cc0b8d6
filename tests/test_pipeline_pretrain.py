"""`pretrain`: joint pre-training over several images writes a checkpoint that presets can load."""

import json

import pytest
import test_pipeline_assets
import torch
from test_pipeline_assets import TINY_SET

from engine import bundle, nets
from engine.cli import main

tiny_assets = test_pipeline_assets.tiny_assets  # session fixture


@pytest.mark.slow
def test_pretrain_writes_shared_weights_that_reconstruct_uses(tiny_assets, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    latents = tmp_path / "latents"
    latents.mkdir()
    for name in ("a", "b"):
        (images / f"{name}.png").write_bytes(tiny_assets["image"].read_bytes())
        (latents / f"{name}.pt").write_bytes(tiny_assets["latent"].read_bytes())
    (tmp_path / "list.txt").write_text("images/a.png\n\nimages/b.png\n")
    sets = [a for item in TINY_SET for a in ("--set", item)]
    ckpt = tmp_path / "joint.pth"
    code = main(["pretrain", "--list", str(tmp_path / "list.txt"), "--latent-dir", str(latents), "--preset", "fast",
                 "--weights", str(tiny_assets["gen"]), "--device", "cpu", "--out", str(ckpt), "--json", *sets])
    assert code == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert result == {"event": "result", "checkpoint": str(ckpt.resolve()), "images": 2}
    data = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert set(nets.NET_NAMES) <= set(data) and len(data["meta"]["images"]) == 2

    out = tmp_path / "bundle"
    code = main(["reconstruct", str(tiny_assets["image"]), "--latent", str(tiny_assets["latent"]), "--preset", "fast",
                 "--weights", str(tiny_assets["gen"]), "--device", "cpu", "--out", str(out), "--no-export", *sets,
                 "--set", f"pretrain=\"{ckpt}\""])
    assert code == 0
    phases = [p["step"] for p in bundle.read(out)["training"]["phases"]]
    assert phases == ["step1", "step2", "collect", "step3"]  # the pretrained depth net replaces the prior fit
