"""The result bundle: atomic writing, reading, validation against schema version 1."""

import json

import numpy as np
import pytest

from engine import bundle
from engine.errors import EngineError


def write_minimal(out, size=8, fail=False):
    with bundle.open_bundle(out) as w:
        rgb = np.full((size, size, 3), 0.5, np.float32)
        for key in ("input", "normal_png", "albedo", "canonical", "reconstruction"):
            w.save_png(key, f"{key}.png", rgb)
        w.save_png("mask", "mask.png", np.ones((size, size), np.float32))
        for key in ("depth", "depth_view", "shading"):
            w.save_npy(key, f"{key}.npy", np.ones((size, size)))
        w.save_npy("normal", "normal.npy", np.zeros((size, size, 3)))
        if fail:
            raise RuntimeError("crash while writing")
        return w.finish({
            "input": {"image": "x.png"}, "preset": "fast", "config": {}, "image_size": size, "camera": {},
            "view": {"rotation_deg": [0, 0, 0], "translation": [0, 0, 0], "raw": [0] * 6},
            "light": {"ambient": 0.5, "diffuse": 0.5, "direction": [0, 0, 1]}, "perceptual": "mobilenet-v2",
            "metrics": {}, "timings": {}, "versions": {}})


def test_written_bundle_reads_back_and_validates(tmp_path):
    data = write_minimal(tmp_path / "b")
    back = bundle.read(tmp_path / "b")
    assert back["schema_version"] == bundle.SCHEMA_VERSION == data["schema_version"]
    assert back["files"]["depth"] == "depth.npy"
    assert np.load(tmp_path / "b" / "depth.npy").dtype == np.float32


def test_failure_while_writing_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        write_minimal(tmp_path / "b", fail=True)
    assert list(tmp_path.iterdir()) == []


def test_rewriting_replaces_an_existing_bundle_whole(tmp_path):
    write_minimal(tmp_path / "b", size=8)
    write_minimal(tmp_path / "b", size=4)
    assert bundle.read(tmp_path / "b")["image_size"] == 4
    assert [p.name for p in tmp_path.iterdir()] == ["b"]


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(schema_version=99), "schema version 99"),
    (lambda d: d.pop("light"), "lacks light"),
    (lambda d: d["files"].update(depth="gone.npy"), "missing: gone.npy"),
    (lambda d: d["files"].update(extra="../outside.png"), "inside the bundle"),
    (lambda d: d.update(image_size=16), "float32 16×16"),
])
def test_invalid_result_json_is_rejected(tmp_path, edit, message):
    write_minimal(tmp_path / "b")
    path = tmp_path / "b" / "result.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(EngineError, match=message):
        bundle.read(tmp_path / "b")


def test_add_files_records_new_files_and_checks_them(tmp_path):
    write_minimal(tmp_path / "b")
    (tmp_path / "b" / "mesh.glb").write_bytes(b"glTF")
    bundle.add_files(tmp_path / "b", {"mesh_glb": "mesh.glb"})
    assert bundle.read(tmp_path / "b")["files"]["mesh_glb"] == "mesh.glb"
    with pytest.raises(EngineError, match="missing"):
        bundle.add_files(tmp_path / "b", {"mesh_obj": "mesh.obj"})


def test_not_a_bundle(tmp_path):
    with pytest.raises(EngineError, match=r"no result\.json"):
        bundle.read(tmp_path)


def test_corrupt_depth_file_is_one_clear_error(tmp_path):
    write_minimal(tmp_path / "b")
    (tmp_path / "b" / "depth.npy").write_bytes(b"\x93NUMPY truncated")
    with pytest.raises(EngineError, match=r"not a readable \.npy"):
        bundle.read(tmp_path / "b")


def test_result_json_that_is_not_an_object_is_rejected(tmp_path):
    write_minimal(tmp_path / "b")
    (tmp_path / "b" / "result.json").write_text("[1, 2]")
    with pytest.raises(EngineError, match="JSON object"):
        bundle.read(tmp_path / "b")
