"""`reconstruct` end to end at tiny sizes: the bundle, JSON progress, resume, bad inputs."""

import json

import numpy as np
import pytest
import test_pipeline_assets
import torch
from PIL import Image
from test_pipeline_assets import TINY_SET, tiny_config

from engine import bundle
from engine.cli import main
from engine.pipeline import state as state_io
from engine.pipeline.run import Request, read_inputs, reconstruct
from engine.progress import Progress

tiny_assets = test_pipeline_assets.tiny_assets  # session fixture shared with the other pipeline tests


def cli(assets, out, *extra):
    args = ["reconstruct", str(assets["image"]), "--latent", str(assets["latent"]), "--preset", "fast",
            "--weights", str(assets["gen"]), "--device", "cpu", "--out", str(out)]
    for item in TINY_SET:
        args += ["--set", item]
    return main([*args, *extra])


def events(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.slow
def test_reconstruct_writes_a_complete_valid_bundle_with_json_progress(tiny_assets, tmp_path, capsys):
    out = tmp_path / "bundle"
    assert cli(tiny_assets, out, "--json", "--set", "save_results=true") == 0
    evs = events(capsys.readouterr().out)
    kinds = [e["event"] for e in evs]
    assert kinds[0] in ("start", "warning") and kinds[-1] == "result" and "error" not in kinds
    assert evs[-1]["bundle"] == str(out.resolve())
    progress = [e for e in evs if e["event"] == "progress" and "step" in e]
    fractions = [e["fraction"] for e in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    # events are rate-limited (4 per second), so fast phases may not show up; the last one always does
    assert {e["step"] for e in progress} <= {"prior", "step1", "step2", "collect", "step3"}
    assert progress[-1]["step"] == "step3" and progress[-1]["iter"] == progress[-1]["total"]
    assert all({"stage", "iter", "total", "eta_s"} <= set(e) for e in progress)

    data = bundle.read(out)  # validates the schema and that every named file exists
    assert data["input"]["latent_source"] == "file" and data["input"]["mask_source"] == "alpha"
    assert data["perceptual"] in ("lpips-vgg", "mobilenet-v2")
    depth = np.load(out / data["files"]["depth"])
    assert depth.shape == (64, 64) and 0.85 < depth.min() <= depth.max() < 1.15
    normal = np.load(out / data["files"]["normal"])
    assert np.allclose(np.linalg.norm(normal, axis=-1), 1, atol=0.02)  # official n/(|n|+1e-7)
    assert np.isclose(np.linalg.norm(data["light"]["direction"]), 1, atol=1e-5)
    assert np.isclose(np.linalg.norm(data["light"]["direction_camera"]), 1, atol=1e-5)
    assert set(data["files"]["previews"]) == {"stage0", "stage1"}
    assert len(data["files"]["previews"]["stage1"]["im_rotate"]) == 14
    assert len(data["files"]["previews"]["stage1"]["im_relight"]) == 20
    assert len(data["files"]["previews"]["stage1"]["gan_rotate"]) == 14
    assert len(data["files"]["previews"]["stage1"]["gan_relight"]) == 20
    gan_frame = np.asarray(Image.open(out / data["files"]["previews"]["stage1"]["gan_rotate"][0]))
    assert gan_frame.std() > 0  # the generator's image, not a blank
    assert Image.open(out / data["files"]["previews"]["stage0"]["shape_rotate"][0]).size == (128, 128)
    assert "mesh_glb" in data["files"]  # the export ran into the bundle
    assert [p["step"] for p in data["training"]["phases"]] == ["prior", "step1", "step2", "collect", "step3"]
    assert data["timings"]["total_s"] > 0
    assert not state_io.state_path_for(out).exists()


class Interrupt(Exception):
    pass


def request(assets, out, cfg, **kw):
    return Request(image=assets["image"], out=out, cfg=cfg, latent=assets["latent"], weights=str(assets["gen"]),
                   export=False, **kw)


@pytest.mark.slow
def test_interrupted_then_resumed_run_equals_an_uninterrupted_run(tiny_assets, tmp_path):
    cfg = tiny_config("device=\"cpu\"", "seed=5", "num_stage=2", "flip1_cfg=[false, false]",
                      "flip3_cfg=[true, false]", "stage_len_dict2=[1, 1, 1]")
    quiet = Progress(json_mode=True, out=open("/dev/null", "w"))  # noqa: SIM115
    reconstruct(request(tiny_assets, tmp_path / "a", cfg), quiet)

    def stop_after_step2_of_stage1(index, phase):
        if phase.stage == 1 and phase.step == "step2":
            raise Interrupt

    out = tmp_path / "b"
    with pytest.raises(Interrupt):
        reconstruct(request(tiny_assets, out, cfg, on_phase_end=stop_after_step2_of_stage1), quiet)
    assert not out.exists() and state_io.state_path_for(out).exists()
    reconstruct(request(tiny_assets, out, cfg, resume=True), quiet)
    assert not state_io.state_path_for(out).exists()

    a, b = bundle.read(tmp_path / "a"), bundle.read(out)
    for key in ("depth", "normal", "shading", "depth_view"):
        assert np.array_equal(np.load(tmp_path / "a" / a["files"][key]), np.load(out / b["files"][key])), key
    assert a["view"] == b["view"] and a["light"] == b["light"]
    assert a["metrics"] == b["metrics"]
    assert b["input"]["resumed"] and not a["input"]["resumed"]


def test_resume_refuses_a_state_of_another_run(tiny_assets, tmp_path):
    out = tmp_path / "b"
    state_io.save_state(state_io.state_path_for(out), {"fingerprint": "other"})
    cfg = tiny_config("device=\"cpu\"")
    with pytest.raises(Exception, match="different input, config or seed"):
        reconstruct(request(tiny_assets, out, cfg, resume=True), Progress(json_mode=True, out=open("/dev/null", "w")))  # noqa: SIM115


def write_bad_inputs(assets, root):
    """name → extra CLI args for one broken input each."""
    (root / "text.png").write_text("not an image")
    (root / "empty.png").write_bytes(b"")
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(root / "black_mask.png")
    torch.save(torch.zeros(3, 7), root / "bad_latent.pt")
    (root / "bad_weights.pt").write_bytes(b"garbage")
    return {
        "unreadable image": ["--set", "mask_fallback=\"full\"", "IMAGE", str(root / "text.png")],
        "zero-size image": ["IMAGE", str(root / "empty.png")],
        "empty mask": ["--mask", str(root / "black_mask.png")],
        "latent of wrong shape": ["--latent", str(root / "bad_latent.pt")],
        "missing weights": ["--weights", str(root / "nowhere.pt")],
        "wrong weights": ["--weights", str(root / "bad_weights.pt")],
    }


def test_bad_inputs_fail_clearly_without_leaving_a_bundle(tiny_assets, tmp_path, capsys):
    for name, extra in write_bad_inputs(tiny_assets, tmp_path).items():
        assets = dict(tiny_assets)
        if "IMAGE" in extra:
            i = extra.index("IMAGE")
            assets["image"] = extra[i + 1]
            extra = extra[:i] + extra[i + 2:]
        out = tmp_path / f"out_{name.replace(' ', '_')}"
        code = cli(assets, out, "--json", *extra)
        captured = capsys.readouterr()
        assert code == 2, name
        errors = [e for e in events(captured.out) if e["event"] == "error"]
        assert len(errors) == 1 and errors[0]["message"], name
        assert captured.err.startswith("error: ") and captured.err.count("\n") == 1, name
        assert not out.exists(), name
        assert not any(p.name.startswith(f".{out.name}") for p in tmp_path.iterdir()), name


def test_huge_image_is_downscaled_with_a_warning(tiny_assets, tmp_path):
    big = tmp_path / "big.png"
    Image.open(tiny_assets["image"]).resize((300, 300)).save(big)
    seen = []
    progress = Progress(json_mode=True, out=open("/dev/null", "w"))  # noqa: SIM115
    progress.warning = seen.append
    inp = read_inputs(Request(image=big, out=tmp_path / "o", cfg=tiny_config("max_input_side=100")), progress)
    assert inp.info["downscaled"] and inp.image.shape == (1, 3, 64, 64)
    assert inp.full.shape[0] <= 100
    assert any("100" in m or "downscal" in m.lower() for m in seen)
