"""The Blender batch script (blender_addon/batch_convert.py) run with the bpy module: images through the
engine, and existing bundles, become .blend and .glb files whose objects, material and lights read back."""

import importlib.util
import json
import math
import subprocess

import numpy as np
import pytest
import test_batch_assets
import trimesh
from pygltflib import GLTF2
from test_batch_assets import BAD, GOOD, PYTHON, ROOT, engine_args, engine_env

batch_assets = test_batch_assets.batch_assets
reference_batch = test_batch_assets.reference_batch
SCRIPT = ROOT / "blender_addon" / "batch_convert.py"
pytestmark = [pytest.mark.slow, pytest.mark.blender,
              pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="the bpy module is not installed")]

READ_BACK = """
import json, sys
import bpy
from mathutils import Vector
bpy.ops.wm.open_mainfile(filepath=sys.argv[1])
scene = bpy.context.scene
mesh = next(ob for ob in bpy.data.objects if ob.type == "MESH")
sun = next(ob for ob in bpy.data.objects if ob.type == "LIGHT")
mat = mesh.data.materials[0]
bsdf = next(n for n in mat.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
tex = bsdf.inputs["Base Color"].links[0].from_node
bg = next(n for n in scene.world.node_tree.nodes if n.type == "BACKGROUND")
print(json.dumps({
    "collections": [c.name for c in scene.collection.children],
    "objects": sorted([ob.type for ob in scene.objects]),
    "vertices": len(mesh.data.vertices), "uv": [layer.name for layer in mesh.data.uv_layers],
    "bundle": mesh["gan2shape_bundle"], "material": mat.name, "texture_packed": tex.image.packed_file is not None,
    "texture_size": list(tex.image.size), "roughness": bsdf.inputs["Roughness"].default_value,
    "sun_type": sun.data.type, "sun_energy": sun.data.energy, "sun_shadow": sun.data.use_shadow,
    "sun_forward": list(sun.matrix_world.to_3x3() @ Vector((0, 0, -1))),
    "world_strength": bg.inputs["Strength"].default_value, "camera": scene.camera.type if scene.camera else None,
}))
"""


def convert(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, str(SCRIPT), "--", *args], cwd=ROOT, env=engine_env(), capture_output=True,
                          text=True, timeout=300)


def read_blend(path) -> dict:
    proc = subprocess.run([PYTHON, "-c", READ_BACK, str(path)], capture_output=True, text=True, timeout=120,
                          env=engine_env())
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def check_blend(blend, bundle_dir) -> None:
    got = read_blend(blend)
    data = json.loads((bundle_dir / "result.json").read_text())
    rig = json.loads((bundle_dir / data["files"]["light_rig"]).read_text())
    assert got["collections"] == [bundle_dir.name] and got["objects"] == ["CAMERA", "LIGHT", "MESH"]
    assert got["camera"] == "CAMERA" and got["bundle"] == str(bundle_dir.resolve())
    glb = trimesh.load(bundle_dir / data["files"]["mesh_glb"], force="mesh", process=False)
    assert got["vertices"] == len(glb.vertices) and got["uv"] == ["UVMap"]
    assert got["texture_packed"] and got["roughness"] == 1.0  # self-contained .blend, Lambertian material
    assert got["sun_type"] == "SUN" and not got["sun_shadow"]
    assert got["sun_energy"] == pytest.approx(rig["sun"]["cycles_strength"], rel=1e-6)
    assert got["sun_energy"] == pytest.approx(math.pi * data["light"]["diffuse"], rel=1e-5)
    x, y, z = rig["sun"]["direction"]  # glTF (Y up) → Blender (Z up): (x, −z, y)
    assert np.allclose(got["sun_forward"], np.array([x, -z, y]) / np.linalg.norm([x, y, z]), atol=1e-5)
    assert got["world_strength"] == pytest.approx(rig["ambient"]["world_strength"], rel=1e-6)


def test_bundles_become_blend_and_glb_files(reference_batch, tmp_path):
    bundles, _ = reference_batch
    out = tmp_path / "out"
    proc = convert("--input", str(bundles), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*(f"{n}.blend" for n in GOOD), *(f"{n}.glb" for n in GOOD), "convert-summary.json"])
    check_blend(out / "fox.blend", bundles / "fox")
    gltf = GLTF2().load(str(out / "fox.glb"))
    lights = gltf.extensions["KHR_lights_punctual"]["lights"]
    assert [light["type"] for light in lights] == ["directional"]
    assert gltf.materials[0].pbrMetallicRoughness.baseColorTexture is not None and gltf.cameras


def test_images_go_through_the_engine_batch_first(batch_assets, tmp_path):
    listing = tmp_path / "list.txt"
    images = batch_assets["images"]
    listing.write_text(f"{images / 'owl.png'}\n{images / f'{BAD}.png'}\n")
    out = tmp_path / "out"
    proc = convert("--input", str(listing), "--out", str(out), "--format", "blend", *engine_args(batch_assets))
    assert proc.returncode == 1, proc.stderr[-3000:]  # the corrupt image is reported …
    assert f"{BAD}.png" in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["bundles", "convert-summary.json", "owl.blend"]  # … the rest done
    check_blend(out / "owl.blend", out / "bundles" / "owl")
    summary = json.loads((out / "convert-summary.json").read_text())["items"]
    assert [bool(r["error"]) for r in summary] == [True, False]
