"""Shared assets for the batch tests (no tests here): six tiny images, one of them corrupt, their
latents, the tiny random-weight generator of the pipeline tests, and a reference batch run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_pipeline_assets import TINY_SET, object_mask, tiny_generator

from engine import bundle
from engine.cli import main
from engine.gan.checkpoint import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
GOOD = ("cat", "dog", "fox", "owl", "yak")
BAD = "broken"


def engine_args(assets: dict[str, Path], *extra: str) -> list[str]:
    """Options of a tiny CPU batch over the asset images (one thread per process: reproducible numbers)."""
    sets = [a for item in TINY_SET for a in ("--set", item)]
    return ["--latent", str(assets["latents"]), "--preset", "fast", "--weights", str(assets["gen"]),
            "--device", "cpu", "--threads", "1", *sets, *extra]


def engine_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def run_engine(*args: str, prefix: tuple[str, ...] = ("engine",), timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m engine ARGS` (or `python -m PREFIX… ARGS`) in a fresh process.

    On a timeout the whole process group is killed, so torchrun's workers do not outlive a hung test.
    """
    with subprocess.Popen([PYTHON, "-m", *prefix, *args], cwd=ROOT, env=engine_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def assert_same_bundle(a: Path, b: Path) -> None:
    """Two bundles hold the same arrays, images, mesh, view, light and metrics."""
    da, db = bundle.read(a), bundle.read(b)
    for key in ("depth", "normal", "shading", "depth_view"):
        assert np.array_equal(np.load(a / da["files"][key]), np.load(b / db["files"][key])), key
    for key in ("albedo", "canonical", "reconstruction", "mesh_glb"):
        assert (a / da["files"][key]).read_bytes() == (b / db["files"][key]).read_bytes(), key
    assert da["view"] == db["view"] and da["light"] == db["light"] and da["metrics"] == db["metrics"]


def session_dir(tmp_path_factory, name: str) -> tuple[Path, bool]:
    """A folder shared by every test module of the session (each module imports these fixtures under
    its own name, which pytest would otherwise set up once per module); True if it was made before."""
    path = tmp_path_factory.getbasetemp() / name
    ready = path / ".ready"
    return path, ready.is_file()


def mark_ready(path: Path) -> None:
    (path / ".ready").write_text("")


@pytest.fixture(scope="session")
def batch_assets(tmp_path_factory) -> dict[str, Path]:
    """{'gen', 'images' (5 good + 1 corrupt PNG), 'latents' (<stem>.pt for every image)}."""
    root, ready = session_dir(tmp_path_factory, "batch_assets")
    assets = {"gen": root / "gen.pt", "images": root / "images", "latents": root / "latents", "root": root}
    if ready:
        return assets
    gen = tiny_generator()
    save_checkpoint(root / "gen.pt", gen.generator, gen.discriminator)
    images, latents = assets["images"], assets["latents"]
    images.mkdir(parents=True)
    latents.mkdir()
    codes = gen.sample_latents(len(GOOD), torch.Generator().manual_seed(7))
    with torch.no_grad():
        pictures = gen.synthesize(codes).clamp(-1, 1).permute(0, 2, 3, 1).numpy() / 2 + 0.5
    for name, code, picture in zip(GOOD, codes, pictures, strict=True):
        torch.save(code[None].clone(), latents / f"{name}.pt")
        rgba = np.concatenate([picture, object_mask()[..., None]], axis=2)
        Image.fromarray((rgba * 255 + 0.5).astype(np.uint8), "RGBA").save(images / f"{name}.png")
    (images / f"{BAD}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"truncated")
    torch.save(codes[0][None].clone(), latents / f"{BAD}.pt")
    mark_ready(root)
    return assets


@pytest.fixture(scope="session")
def reference_batch(batch_assets, tmp_path_factory) -> tuple[Path, int]:
    """The six images through `batch --workers 2` in this process: (output folder, exit code)."""
    root, ready = session_dir(tmp_path_factory, "batch_reference")
    out = root / "out"
    if not ready:
        code = main(["batch", str(batch_assets["images"]), "--out", str(out), "--workers", "2",
                     *engine_args(batch_assets)])
        (root / "exit_code").write_text(str(code))
        mark_ready(root)
    return out, int((root / "exit_code").read_text())
