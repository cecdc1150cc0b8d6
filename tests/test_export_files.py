"""export_bundle end to end on the analytic ellipsoid bundle: files, re-imports, texture, lighting, CLI."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pygltflib
import pytest
import trimesh
from PIL import Image
from scipy.ndimage import binary_erosion
from scipy.spatial.transform import Rotation
from test_export_scene import FOV, Scene

from engine import bundle
from engine.cli import main
from engine.export import ExportOptions, build_mesh, export_bundle
from engine.export.texture import hires_albedo
from engine.render import Camera

_DTYPES = {5126: np.float32, 5125: np.uint32, 5123: np.uint16, 5121: np.uint8}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}


class Glb:
    """A glb read back with pygltflib (a library independent of the trimesh writer)."""

    def __init__(self, path: Path):
        self.gltf = pygltflib.GLTF2().load(str(path))
        self.blob = self.gltf.binary_blob()
        prim = self.gltf.meshes[0].primitives[0]
        self.positions = self.accessor(prim.attributes.POSITION)
        self.normals = self.accessor(prim.attributes.NORMAL)
        self.uvs = self.accessor(prim.attributes.TEXCOORD_0)
        self.faces = self.accessor(prim.indices).reshape(-1, 3)
        material = self.gltf.materials[prim.material]
        image = self.gltf.images[self.gltf.textures[material.pbrMetallicRoughness.baseColorTexture.index].source]
        view = self.gltf.bufferViews[image.bufferView]
        start = view.byteOffset or 0
        self.texture = np.asarray(Image.open(io.BytesIO(self.blob[start:start + view.byteLength])).convert("RGB"))

    def accessor(self, index: int) -> np.ndarray:
        acc = self.gltf.accessors[index]
        view = self.gltf.bufferViews[acc.bufferView]
        width = _WIDTH[acc.type]
        start = (view.byteOffset or 0) + (acc.byteOffset or 0)
        return np.frombuffer(self.blob, _DTYPES[acc.componentType], acc.count * width, start).reshape(acc.count, width)

    def node(self, name: str) -> pygltflib.Node:
        return next(n for n in self.gltf.nodes if n.name == name)


@pytest.fixture(scope="module")
def scene() -> Scene:
    return Scene()


@pytest.fixture(scope="module")
def exported(tmp_path_factory, scene: Scene) -> Path:
    root = scene.write(tmp_path_factory.mktemp("export") / "bundle")
    export_bundle(root, ExportOptions(formats=("glb", "obj"), shaded_texture=True))
    return root


def expected_mesh(root: Path, **options):
    files = bundle.read(root)["files"]
    depth = np.load(root / files["depth"])
    mask = np.asarray(Image.open(root / files["mask"])) > 127
    return build_mesh(depth, mask, FOV, ExportOptions(**options))[0]


def test_files_are_written_and_recorded(exported: Path) -> None:
    files = bundle.read(exported)["files"]  # validates: every named file exists
    for key, name in {"mesh_glb": "mesh.glb", "mesh_obj": "mesh.obj", "mesh_mtl": "mesh.mtl",
                      "albedo_hires": "albedo_hires.png", "shaded_texture": "shaded_texture.png",
                      "light_rig": "light_rig.json"}.items():
        assert files[key] == name
    assert "map_Kd albedo_hires.png" in (exported / "mesh.mtl").read_text()
    assert not list(exported.glob(".*tmp"))  # no leftovers of the atomic writes


def test_glb_reimports_with_counts_uvs_normals_and_embedded_texture(exported: Path, scene: Scene) -> None:
    mesh = expected_mesh(exported)
    glb = Glb(exported / "mesh.glb")
    assert glb.positions.shape == mesh.vertices.shape and glb.faces.shape == mesh.faces.shape
    np.testing.assert_allclose(glb.positions, mesh.vertices, atol=1e-6)
    np.testing.assert_allclose(glb.uvs, mesh.uvs, atol=1e-6)  # glTF convention survives trimesh's v flip
    assert glb.uvs.min() >= 0 and glb.uvs.max() <= 1
    np.testing.assert_allclose(np.linalg.norm(glb.normals, axis=1), 1.0, atol=1e-5)
    assert glb.texture.shape == (scene.photo_size, scene.photo_size, 3)
    np.testing.assert_array_equal(glb.texture, np.asarray(Image.open(exported / "albedo_hires.png")))
    tri = glb.positions[glb.faces].astype(np.float64)
    assert np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).min() > 1e-8
    loaded = next(iter(trimesh.load(exported / "mesh.glb").geometry.values()))
    assert loaded.vertices.shape == mesh.vertices.shape and loaded.faces.shape == mesh.faces.shape


def test_glb_vertices_reproject_onto_the_bundle_depth(exported: Path, scene: Scene) -> None:
    """Undo the documented asset transform (light_rig.json), project with the engine camera."""
    asset = json.loads((exported / "light_rig.json").read_text())["asset"]
    points = (Glb(exported / "mesh.glb").positions / asset["scale"] + asset["centre"]) * [1.0, -1.0, -1.0]
    f = (scene.size - 1) / 2 / np.tan(np.radians(FOV / 2))
    u = f * points[:, 0] / points[:, 2] + (scene.size - 1) / 2
    v = f * points[:, 1] / points[:, 2] + (scene.size - 1) / 2
    j, i = np.rint(u).astype(int), np.rint(v).astype(int)
    np.testing.assert_allclose(np.stack([u, v], 1), np.stack([j, i], 1), atol=1e-3)
    depth = np.load(exported / "depth.npy")
    np.testing.assert_allclose(points[:, 2], depth[i, j], atol=1e-4)
    assert (np.asarray(Image.open(exported / "mask.png"))[i, j] == 255).all()


def test_obj_reimports_with_counts(exported: Path) -> None:
    mesh = expected_mesh(exported)
    loaded = trimesh.load(exported / "mesh.obj", process=False)
    assert loaded.vertices.shape == mesh.vertices.shape and loaded.faces.shape == mesh.faces.shape
    np.testing.assert_allclose(loaded.vertices, mesh.vertices, atol=1e-6)
    np.testing.assert_allclose(loaded.vertex_normals, mesh.normals, atol=1e-6)
    np.testing.assert_allclose(loaded.visual.uv, np.stack([mesh.uvs[:, 0], 1 - mesh.uvs[:, 1]], 1), atol=1e-6)
    assert loaded.visual.material.image.size == Image.open(exported / "albedo_hires.png").size


def test_lighting_from_the_exported_files_reproduces_the_canonical_image(exported: Path, scene: Scene) -> None:
    """Lambertian shading from the glb's normals, texture and sun plus the rig's ambient ≈ canonical.png."""
    glb = Glb(exported / "mesh.glb")
    rig = json.loads((exported / "light_rig.json").read_text())
    sun_node = glb.node("Sun")
    light = glb.gltf.extensions["KHR_lights_punctual"]["lights"][sun_node.extensions["KHR_lights_punctual"]["light"]]
    assert light["type"] == "directional"
    travel = Rotation.from_quat(sun_node.rotation).apply([0.0, 0.0, -1.0])
    k_d = light["intensity"] / 683.0 / np.pi  # Blender's import: W/m² = lux / 683; E = π·k_d
    k_a = rig["ambient"]["world_strength"]
    shading = k_a + k_d * np.maximum(0.0, glb.normals @ -travel)
    tex = glb.texture.shape[0]
    texel = np.clip(np.floor(glb.uvs * tex).astype(int), 0, tex - 1)
    albedo = glb.texture[texel[:, 1], texel[:, 0]] / 255.0
    recomputed = albedo * shading[:, None]
    size = scene.size
    pixel = np.rint(glb.uvs * size - 0.5).astype(int)
    canonical = np.asarray(Image.open(exported / "canonical.png")) / 255.0
    reference = canonical[pixel[:, 1], pixel[:, 0]]
    assert np.corrcoef(recomputed.ravel(), reference.ravel())[0, 1] >= 0.99
    assert np.abs(recomputed - reference).mean() < 0.02
    flat = albedo * (k_a + k_d * np.maximum(0.0, glb.normals @ (-travel * [-1.0, 1.0, 1.0])))[:, None]
    assert np.abs(flat - reference).mean() > 2 * np.abs(recomputed - reference).mean()


def test_hires_albedo_undoes_the_light_through_the_predicted_view(exported: Path, scene: Scene) -> None:
    truth = scene.canonical(scene.photo_size)
    inner = binary_erosion(truth["mask"], iterations=4)
    hires = np.asarray(Image.open(exported / "albedo_hires.png")) / 255.0
    error = np.abs(hires - truth["albedo"])[inner].mean()
    assert error < 0.006
    maps = scene.canonical()
    photo = np.asarray(Image.open(exported / "input_full.png")) / 255.0
    depth_view = np.load(exported / "depth_view.npy")
    unwarped = hires_albedo(photo, maps["albedo"], maps["shading"], maps["mask"], maps["depth"], depth_view,
                            np.zeros(6), Camera(scene.size, FOV), 1.2)
    assert np.abs(unwarped - truth["albedo"])[inner].mean() > 4 * error  # the view matters and is applied
    shaded = np.asarray(Image.open(exported / "shaded_texture.png")) / 255.0
    assert np.abs(shaded - truth["canonical"])[inner].mean() < 0.01


def test_without_the_full_photo_the_network_albedo_is_the_texture(tmp_path: Path) -> None:
    root = Scene(photo_size=None).write(tmp_path / "b")
    written = export_bundle(root, ExportOptions(formats=("obj",)))
    assert "albedo_hires" not in written and "mesh_glb" not in written
    assert "map_Kd albedo.png" in (root / "mesh.mtl").read_text()


def test_border_clamp_columns_never_become_surface(tmp_path: Path) -> None:
    root = Scene().write(tmp_path / "b")
    depth = np.load(root / "depth.npy")
    depth[:, :2] = depth[:, -2:] = 1.04  # the pipeline's border clamp (spec §2.5)
    np.save(root / "depth.npy", depth)
    Image.fromarray(np.full(depth.shape, 255, np.uint8)).save(root / "mask.png")  # no mask at all
    export_bundle(root, ExportOptions(hires_texture=False))
    uvs = Glb(root / "mesh.glb").uvs
    columns = np.rint(uvs[:, 0] * depth.shape[1] - 0.5)
    assert columns.min() >= 2 and columns.max() <= depth.shape[1] - 3


def test_solid_files_are_watertight(tmp_path: Path) -> None:
    root = Scene().write(tmp_path / "b")
    export_bundle(root, ExportOptions(formats=("glb", "obj"), solid=True, resolution=48))
    for name in ("mesh.glb", "mesh.obj"):
        loaded = trimesh.load(root / name, force="mesh")
        assert loaded.is_watertight and loaded.is_winding_consistent and loaded.volume > 0, name
    assert Glb(root / "mesh.glb").gltf.materials[0].doubleSided is False


@pytest.mark.blender
def test_blender_imports_glb_and_obj(exported: Path) -> None:
    pytest.importorskip("bpy")
    mesh = expected_mesh(exported)
    script = textwrap.dedent("""
        import json, sys
        import bpy
        from mathutils import Vector
        out = {}
        for kind, path in (("glb", sys.argv[1]), ("obj", sys.argv[2])):
            bpy.ops.wm.read_factory_settings(use_empty=True)
            if kind == "glb":
                bpy.ops.import_scene.gltf(filepath=path)
            else:
                bpy.ops.wm.obj_import(filepath=path)
            meshes = [o for o in bpy.data.objects if o.type == "MESH"]
            suns = [o for o in bpy.data.objects if o.type == "LIGHT" and o.data.type == "SUN"]
            out[kind] = {
                "meshes": len(meshes), "vertices": len(meshes[0].data.vertices),
                "faces": len(meshes[0].data.polygons), "uv_layers": len(meshes[0].data.uv_layers),
                "images": [list(i.size) for i in bpy.data.images if i.size[0] > 0],
                "suns": [{"energy": s.data.energy, "travel": list(s.matrix_world.to_3x3() @ Vector((0, 0, -1)))}
                         for s in suns],
                "cameras": sum(o.type == "CAMERA" for o in bpy.data.objects),
            }
        print("RESULT" + json.dumps(out))
    """)
    proc = subprocess.run([sys.executable, "-c", script, str(exported / "mesh.glb"), str(exported / "mesh.obj")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT"))[6:])
    rig = json.loads((exported / "light_rig.json").read_text())
    for kind in ("glb", "obj"):
        got = out[kind]
        assert (got["meshes"], got["vertices"], got["faces"], got["uv_layers"]) == (
            1, len(mesh.vertices), len(mesh.faces), 1), kind
        assert [128, 128] in got["images"], kind
    sun = out["glb"]["suns"][0]
    assert sun["energy"] == pytest.approx(rig["sun"]["cycles_strength"], rel=1e-5)
    x, y, z = rig["sun"]["direction"]
    np.testing.assert_allclose(sun["travel"], [x, -z, y], atol=1e-5)  # glTF Y-up → Blender Z-up
    assert out["glb"]["cameras"] == 1


def test_cli_exports_and_reports(tmp_path: Path, capsys) -> None:
    root = Scene().write(tmp_path / "b")
    assert main(["export", str(root), "--format", "both", "--solid", "--resolution", "40", "--json"]) == 0
    event = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert event["event"] == "result" and {"mesh_glb", "mesh_obj", "light_rig"} <= set(event["files"])
    assert trimesh.load(root / "mesh.obj").is_watertight
    assert main(["export", str(tmp_path / "missing")]) == 2
    assert main(["export", str(root), "--resolution", "1"]) == 2
    assert "error:" in capsys.readouterr().err



def test_corrupt_shading_file_is_one_clear_error(tmp_path: Path, scene: Scene, capsys) -> None:
    root = scene.write(tmp_path / "bundle")
    (root / "shading.npy").write_bytes(b"\x93NUMPY truncated")
    assert main(["export", str(root)]) == 2
    assert "shading.npy" in capsys.readouterr().err
    assert not (root / "mesh.glb").exists()
