"""Install from the zips, import a stored bundle, read everything back (real bpy 4.5, headless)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from .conftest import EXT_MODULE, configure

pytestmark = pytest.mark.blender
DATA_KINDS = ("collections", "objects", "meshes", "materials", "images", "lights", "cameras", "worlds")


def data_counts(bpy) -> dict[str, int]:
    return {kind: len(getattr(bpy.data, kind)) for kind in DATA_KINDS}


def engine_to_blender(v) -> np.ndarray:
    """Independent statement of the frame contract: engine (x right, y down, z forward) → Blender (x, z, −y)."""
    x, y, z = v
    return np.array([x, z, -y], dtype=np.float64)


def angle_deg(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    cos = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    return math.degrees(math.acos(min(1.0, max(-1.0, cos))))


def import_stored(bpy, bundle: Path, **options) -> set[str]:
    return bpy.ops.import_scene.gan2shape_bundle(directory=str(bundle), **options)


def test_extension_zip_registers_operators_menu_and_preferences(bpy_module, addon):
    bpy = bpy_module
    assert hasattr(bpy.types, "IMPORT_SCENE_OT_gan2shape_image")
    assert bpy.ops.import_scene.gan2shape_image.get_rna_type().name == "Image to 3D (GAN2Shape)"
    assert hasattr(bpy.types, "VIEW3D_PT_gan2shape")
    menu_funcs = bpy.types.TOPBAR_MT_file_import._dyn_ui_initialize()
    assert any(getattr(f, "__module__", "").startswith(EXT_MODULE) for f in menu_funcs)
    prefs = bpy.context.preferences.addons[EXT_MODULE].preferences
    assert {"engine_python", "weights_dir", "device", "preset", "output_dir"} <= set(prefs.bl_rna.properties.keys())
    assert prefs.device == "auto" and prefs.preset == "default"


def test_engine_interpreter_is_auto_detected(bpy_module, addon):
    """An empty interpreter field falls back to the project's .venv (found via the zip's project hint)."""
    prefs = bpy_module.context.preferences.addons[EXT_MODULE].preferences
    configured = prefs.engine_python
    prefs.engine_python = ""
    try:
        found = addon.preferences.engine_python(prefs)
    finally:
        prefs.engine_python = configured
    assert Path(found).resolve() == Path(configured).resolve()


def test_import_bundle_builds_mesh_material_light_world_camera(clean_scene, stored_bundle):
    import trimesh
    from mathutils import Vector

    bpy = clean_scene
    assert import_stored(bpy, stored_bundle) == {"FINISHED"}
    data = json.loads((stored_bundle / "result.json").read_text())
    rig = json.loads((stored_bundle / "light_rig.json").read_text())

    coll = bpy.data.collections["relief_photo"]  # named after the input image
    assert coll.name in bpy.context.scene.collection.children
    kinds = sorted(ob.type for ob in coll.objects)
    assert kinds == ["CAMERA", "LIGHT", "MESH"]
    obj = next(ob for ob in coll.objects if ob.type == "MESH")
    me = obj.data

    # Geometry: exactly export's mesh.glb, turned from glTF Y-up to Blender Z-up (x, -z, y).
    glb = trimesh.load(stored_bundle / "mesh.glb", force="mesh", process=False)
    verts = np.array([v.co[:] for v in me.vertices])
    expect = np.asarray(glb.vertices) @ np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], float)
    assert len(me.vertices) == len(glb.vertices) and len(me.polygons) == len(glb.faces)
    np.testing.assert_allclose(verts[np.lexsort(verts.T)], expect[np.lexsort(expect.T)], atol=1e-5)
    assert all(p.use_smooth for p in me.polygons)
    # The camera looks along +Y (engine z): the relief faces -Y, toward it.
    normal_y = np.array([p.normal.y for p in me.polygons])
    assert np.mean(normal_y < 0) > 0.95

    # UVs: those of mesh.glb (trimesh, like Blender, measures v from the image's bottom).
    uv = np.zeros(2 * len(me.loops))
    me.uv_layers["UVMap"].data.foreach_get("uv", uv)
    loop_vert = np.zeros(len(me.loops), dtype=np.int64)
    me.loops.foreach_get("vertex_index", loop_vert)
    glb_uv = np.asarray(glb.visual.uv)
    order = np.lexsort(expect.T)  # match Blender vertices to glb vertices by position
    blender_of_glb = np.empty(len(order), np.int64)
    blender_of_glb[order] = np.lexsort(verts.T)
    per_vertex = np.zeros((len(me.vertices), 2))
    per_vertex[blender_of_glb] = glb_uv
    np.testing.assert_allclose(uv.reshape(-1, 2), per_vertex[loop_vert], atol=1e-6)

    # Material: UV → Image Texture → Principled Base Color; absolute path to the hi-res albedo, not packed.
    mat = me.materials[0]
    bsdf = next(n for n in mat.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    base_link = bsdf.inputs["Base Color"].links[0]
    tex = base_link.from_node
    assert tex.type == "TEX_IMAGE" and base_link.from_socket.name == "Color"
    assert tex.inputs["Vector"].links[0].from_node.type == "UVMAP"
    img = tex.image
    assert Path(img.filepath).is_absolute() and Path(img.filepath) == stored_bundle / "albedo_hires.png"
    assert img.packed_file is None and img.colorspace_settings.name == "sRGB"
    assert tuple(img.size) == (256, 256)
    assert bsdf.inputs["Roughness"].default_value == 1.0
    assert bsdf.inputs["Specular IOR Level"].default_value == 0.0

    # Sun: shines along the engine's light direction; strength pi * k_d; no cast shadows (Lambert model).
    sun = next(ob for ob in coll.objects if ob.type == "LIGHT")
    shine = np.array(sun.matrix_world.to_3x3() @ Vector((0, 0, -1)))
    assert angle_deg(shine, engine_to_blender(data["light"]["direction"])) < 0.5
    assert sun.data.type == "SUN" and not sun.data.use_shadow
    assert sun.data.energy == pytest.approx(math.pi * data["light"]["diffuse"], rel=1e-6)
    assert sun.data.energy == pytest.approx(rig["sun"]["cycles_strength"], rel=1e-6)

    # World: white background of strength k_a, set as the scene's world.
    world = bpy.context.scene.world
    bg = next(n for n in world.node_tree.nodes if n.type == "BACKGROUND")
    assert bg.inputs["Strength"].default_value == pytest.approx(data["light"]["ambient"], rel=1e-6)
    assert tuple(bg.inputs["Color"].default_value) == (1.0, 1.0, 1.0, 1.0)

    # Camera: the scene camera, fov 10 degrees between outer pixel centres, square render of the photo crop.
    cam = bpy.context.scene.camera
    assert cam is not None and cam.name in coll.objects
    s = data["image_size"]
    assert math.degrees(cam.data.angle) == pytest.approx(
        math.degrees(2 * math.atan(math.tan(math.radians(5)) * s / (s - 1))), rel=1e-5)
    assert (bpy.context.scene.render.resolution_x, bpy.context.scene.render.resolution_y) == (256, 256)
    # It looks at the object from the estimated view: rotating the engine's forward axis by R^T.
    rx, ry, rz = (math.radians(a) for a in data["view"]["rotation_deg"])
    c, s_ = np.cos, np.sin
    r = (np.array([[c(rz), -s_(rz), 0], [s_(rz), c(rz), 0], [0, 0, 1]])
         @ np.array([[c(ry), 0, s_(ry)], [0, 1, 0], [-s_(ry), 0, c(ry)]])
         @ np.array([[1, 0, 0], [0, c(rx), -s_(rx)], [0, s_(rx), c(rx)]]))
    look = np.array(cam.matrix_world.to_3x3() @ Vector((0, 0, -1)))
    assert angle_deg(look, engine_to_blender(r.T @ [0, 0, 1])) < 1e-3

    # Custom properties on the object and the collection.
    for block in (obj, coll):
        assert block["gan2shape_bundle"] == str(stored_bundle)
        assert block["gan2shape_preset"] == "default"
        assert block["gan2shape_metrics"].to_dict() == pytest.approx(data["metrics"])


def test_import_options_linear_albedo_pack_and_nothing_extra(clean_scene, stored_bundle):
    bpy = clean_scene
    result = import_stored(bpy, stored_bundle, linear_albedo=True, pack_images=True, hires_texture=False,
                           add_camera=False, add_light=False, set_world=False)
    assert result == {"FINISHED"}
    coll = bpy.data.collections["relief_photo"]
    assert [ob.type for ob in coll.objects] == ["MESH"]
    assert bpy.context.scene.camera is None and bpy.context.scene.world is None
    img = bpy.data.images[0]
    assert Path(img.filepath) == stored_bundle / "albedo.png"
    assert img.packed_file is not None and img.colorspace_settings.name == "Non-Color"


def test_import_is_undoable(clean_scene, stored_bundle):
    bpy = clean_scene
    bpy.ops.ed.undo_push(message="before import")
    # From Python an operator pushes an undo step only when asked (the UI always asks for UNDO operators).
    assert bpy.ops.import_scene.gan2shape_bundle("EXEC_DEFAULT", True, directory=str(stored_bundle)) == {"FINISHED"}
    assert "relief_photo" in bpy.data.collections
    bpy.ops.ed.undo()
    assert "relief_photo" not in bpy.data.collections and len(bpy.data.meshes) == 0
    bpy.ops.ed.redo()
    assert "relief_photo" in bpy.context.scene.collection.children


def _broken_copy(src: Path, dst: Path, drop_keys=(), corrupt: str | None = None) -> Path:
    shutil.copytree(src, dst)
    result = json.loads((dst / "result.json").read_text())
    for key in drop_keys:
        result["files"].pop(key)
    (dst / "result.json").write_text(json.dumps(result))
    if corrupt:
        (dst / corrupt).write_bytes(b"glTF\x02\x00\x00\x00garbage")
    return dst


@pytest.mark.parametrize("breakage", ["no_export", "bad_glb", "missing_albedo"])
def test_failed_import_leaves_scene_unchanged_and_reports(clean_scene, stored_bundle, tmp_path, breakage):
    """Failures at each building stage (before, during and after the mesh) roll back every data-block."""
    bpy = clean_scene
    bundle = {
        "no_export": lambda: _broken_copy(stored_bundle, tmp_path / "b", drop_keys=("mesh_glb", "light_rig")),
        "bad_glb": lambda: _broken_copy(stored_bundle, tmp_path / "b", corrupt="mesh.glb"),
        "missing_albedo": lambda: _broken_copy(stored_bundle, tmp_path / "b", drop_keys=("albedo", "albedo_hires")),
    }[breakage]()
    before = data_counts(bpy)
    with pytest.raises(RuntimeError) as err:
        import_stored(bpy, bundle)
    assert "GAN2Shape import failed" in str(err.value)
    if breakage == "no_export":
        assert "engine export" in str(err.value)
    assert data_counts(bpy) == before


def test_legacy_zip_installs_and_enables(bpy_module, addon, zips):
    import addon_utils

    bpy = bpy_module
    addon_utils.disable(EXT_MODULE)
    try:
        assert not hasattr(bpy.types, "IMPORT_SCENE_OT_gan2shape_image")
        assert bpy.ops.preferences.addon_install(filepath=str(zips["legacy"])) == {"FINISHED"}
        assert bpy.ops.preferences.addon_enable(module="gan2shape") == {"FINISHED"}
        module = __import__("gan2shape")
        assert module.bl_info["name"].startswith("GAN2Shape")
        assert Path(module.__file__).parent.parent.name == "addons"
        assert hasattr(bpy.types, "IMPORT_SCENE_OT_gan2shape_image")
        assert bpy.context.preferences.addons["gan2shape"].preferences.device == "auto"
        bpy.ops.preferences.addon_disable(module="gan2shape")
        assert not hasattr(bpy.types, "IMPORT_SCENE_OT_gan2shape_image")
    finally:
        addon_utils.enable(EXT_MODULE, default_set=True)
        configure(bpy, EXT_MODULE)
