"""The add-on driving the real engine as a subprocess: Validate, failures, cancel, a full run."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .conftest import EXT_MODULE, ROOT
from .test_blender_import import data_counts

pytestmark = pytest.mark.blender
ENGINE_PYTHON = str(ROOT / ".venv" / "bin" / "python")


@pytest.fixture
def prefs(bpy_module, addon):
    prefs = bpy_module.context.preferences.addons[EXT_MODULE].preferences
    saved = {k: getattr(prefs, k) for k in ("engine_python", "weights_dir", "engine_info")}
    yield prefs
    for key, value in saved.items():
        setattr(prefs, key, value)


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> tuple[Path, Path]:
    """A small photo and its object mask."""
    folder = tmp_path_factory.mktemp("photo")
    y, x = np.mgrid[0:96, 0:96]
    inside = ((x - 48) / 34) ** 2 + ((y - 46) / 30) ** 2 < 1
    image = np.stack([60 + 1.5 * x, 50 + 1.8 * y, 120 + 60 * inside], -1).astype(np.uint8)
    Image.fromarray(image).save(folder / "toy_photo.png")
    Image.fromarray((inside * 255).astype(np.uint8)).save(folder / "toy_mask.png")
    return folder / "toy_photo.png", folder / "toy_mask.png"


def output_entries(prefs) -> list[str]:
    out = Path(prefs.output_dir)
    return sorted(p.name for p in out.iterdir()) if out.exists() else []


def test_validate_shows_engine_info(bpy_module, prefs, tmp_path):
    prefs.weights_dir = str(tmp_path)
    assert bpy_module.ops.gan2shape.validate_engine() == {"FINISHED"}
    info = prefs.engine_info
    assert "engine 0.1.0" in info and "device cpu" in info
    assert f"weights folders: {tmp_path}" in info  # the preference reaches the engine as GAN2SHAPE_WEIGHTS


def test_validate_reports_an_unusable_interpreter(bpy_module, prefs, tmp_path):
    prefs.engine_python = str(tmp_path / "no" / "python")
    with pytest.raises(RuntimeError, match="cannot run"):
        bpy_module.ops.gan2shape.validate_engine()
    assert prefs.engine_info.startswith("not usable")


def test_engine_job_reports_a_crash_without_error_event(addon):
    """A non-zero exit without an `error` event is a failure too; the last stderr line is the message."""
    job = addon.engine_job.EngineJob([ENGINE_PYTHON, "-m", "engine", "reconstruct", "--json", "x.png"])
    outcome = job.run_blocking(timeout=120)
    assert not outcome.ok and outcome.returncode == 2
    assert "the following arguments are required: --out" in outcome.error


def test_engine_error_imports_nothing_and_shows_the_message(clean_scene, prefs, photo):
    """The engine's one-line `error` event reaches Blender's report; the scene and output folder are unchanged."""
    bpy = clean_scene
    before, entries = data_counts(bpy), output_entries(prefs)
    with pytest.raises(RuntimeError) as err:
        bpy.ops.import_scene.gan2shape_image(filepath=str(photo[0]), preset="no_such_preset")
    assert "GAN2Shape engine failed" in str(err.value) and "unknown preset 'no_such_preset'" in str(err.value)
    assert data_counts(bpy) == before
    assert output_entries(prefs) == entries


def test_cancel_terminates_the_engine_and_removes_its_files(clean_scene, addon, photo, tmp_path):
    bpy = clean_scene
    before = data_counts(bpy)
    out_root = tmp_path / "out"
    req = addon.engine_job.ReconstructRequest(python=ENGINE_PYTHON, images=[str(photo[0])], out_root=str(out_root),
                                              preset="fast", device="cpu", mask=str(photo[1]))
    batch = addon.engine_job.ReconstructBatch(req)
    batch.start()
    work = batch.work
    assert work.is_dir() and work.parent == out_root
    deadline = time.monotonic() + 120
    events: list[dict] = []
    while not events and time.monotonic() < deadline:  # wait until the engine is up and talking
        events = batch.poll()
        time.sleep(0.05)
    assert events and batch.job.proc.poll() is None, "the engine ended before it could be cancelled"
    batch.cancel()
    assert batch.job.proc.poll() is not None  # terminated
    assert batch.done and batch.cancelled and batch.produced == []
    assert not work.exists() and list(out_root.iterdir()) == []
    assert data_counts(bpy) == before


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory) -> tuple[Path, Path]:
    """A weights folder whose `default` generator (the presets' GAN) is a tiny random-weight StyleGAN2,
    and a W latent for it."""
    import torch

    from engine.gan import Discriminator, Generator, StyleGAN2Arch, save_checkpoint

    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    arch = StyleGAN2Arch(64, style_dim=32, n_mlp=2, channel_multiplier=1, channel_max=16)
    save_checkpoint(folder / "default" / "generator.pt", Generator(arch), Discriminator(arch))
    torch.save({"latent": torch.randn(arch.style_dim)}, folder / "latent.pt")
    return folder, folder / "latent.pt"


@pytest.mark.slow
def test_image_to_3d_with_the_real_engine(clean_scene, prefs, photo, random_weights):
    bpy = clean_scene
    prefs.weights_dir = str(random_weights[0])
    entries = output_entries(prefs)
    result = bpy.ops.import_scene.gan2shape_image(filepath=str(photo[0]), mask=str(photo[1]),
                                                  latent=str(random_weights[1]), quality="DRAFT",
                                                  overrides="save_results=false; lam_perc=0")
    assert result == {"FINISHED"}
    coll = bpy.data.collections["toy_photo"]
    obj = next(ob for ob in coll.objects if ob.type == "MESH")
    bundle = Path(obj["gan2shape_bundle"])
    assert bundle.parent == Path(prefs.output_dir) and bundle.name == "toy_photo"
    assert sorted(set(output_entries(prefs)) - set(entries)) == ["toy_photo"]  # no work folder left behind
    data = json.loads((bundle / "result.json").read_text())
    assert data["preset"] == obj["gan2shape_preset"] == "fast"
    assert data["input"]["image"] == str(photo[0]) and data["input"]["latent_source"] == "file"
    assert data["config"]["save_results"] is False  # the overrides reached the engine
    assert len(obj.data.polygons) > 100 and obj.data.uv_layers
    sun = next(ob for ob in coll.objects if ob.type == "LIGHT")
    assert sun.data.energy == pytest.approx(np.pi * max(data["light"]["diffuse"], 0), rel=1e-5)


def test_addon_imports_only_what_blender_ships(addon):
    """No torch, PIL or engine imports: the add-on runs in Blender's own Python."""
    import ast

    allowed = set(sys.stdlib_module_names) | {"bpy", "bpy_extras", "mathutils", "numpy", "addon_utils"}
    for path in Path(addon.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            assert {n.split(".")[0] for n in names} <= allowed, f"{path.name} imports {names}"


def test_status_text_and_request_checks(addon, photo, tmp_path):
    job = addon.engine_job
    text = job.status_text({"event": "progress", "stage": 1, "step": "step2", "iter": 3, "total": 10,
                            "fraction": 0.425, "eta_s": 75.0})
    assert text == "stage 1  step2  3/10  42%  ETA 1:15"
    assert job.status_text(None) == "starting the engine…"
    req = job.ReconstructRequest(python=ENGINE_PYTHON, images=[str(photo[0])] * 2, out_root=str(tmp_path),
                                 latent=str(photo[0]))
    with pytest.raises(ValueError, match="single image"):
        job.ReconstructBatch(req)
    assert job.reconstruct_argv(job.ReconstructRequest(python="py", images=[], out_root="o", mask="m.png"),
                                "a.png", Path("o/x")) == [
        "py", "-m", "engine", "reconstruct", "a.png", "--out", "o/x", "--preset", "default", "--device", "auto",
        "--json", "--mask", "m.png"]
