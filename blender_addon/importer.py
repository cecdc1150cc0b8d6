"""Bundle → Blender objects: textured mesh, Sun and world for the estimated light, matching camera.

Plain functions (no operator state) so the headless tests drive exactly what the operators run.
Everything is created first and linked into the scene last; if anything fails, every data-block made
so far is removed again, so a failed import leaves the file unchanged.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix, Vector

from . import frames
from .bundle import Bundle, BundleError, read_bundle
from .glb import GLBError, read_glb

PROP_PREFIX = "gan2shape_"
RIG_KEYS = (("asset", "centre"), ("asset", "scale"), ("sun", "direction"), ("sun", "cycles_strength"),
            ("ambient", "world_strength"))
EXPORT_HINT = " (run `python -m engine export <bundle>` to add the mesh files)"


@dataclass
class ImportOptions:
    """What to create besides the textured mesh."""

    camera: bool = True
    light: bool = True
    world: bool = True
    pack_images: bool = False
    linear_albedo: bool = False  # treat albedo values as linear reflectance (the engine's own image model)
    hires_texture: bool = True
    render_size: bool = True  # with the camera: square render resolution of the photo's crop


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG header, without decoding the image."""
    with open(path, "rb") as fh:
        head = fh.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        raise BundleError(f"{path}: not a PNG file")
    return struct.unpack(">II", head[16:24])


def read_light_rig(bundle: Bundle) -> dict:
    """The export's light_rig.json: Sun and world values and the engine → asset transform."""
    path = bundle.require("light_rig", EXPORT_HINT)
    try:
        rig = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path}: unreadable ({exc})") from None
    missing = [f"{part}.{key}" for part, key in RIG_KEYS if key not in (rig.get(part) or {})]
    if missing:
        raise BundleError(f"{path}: the light rig lacks {', '.join(missing)}")
    return rig


class _Created:
    """Data-blocks made during one import, removed again if the import fails."""

    def __init__(self) -> None:
        self.blocks: list[tuple[bpy.types.bpy_prop_collection, bpy.types.ID]] = []

    def add(self, collection, block):
        self.blocks.append((collection, block))
        return block

    def remove_all(self) -> None:
        for collection, block in reversed(self.blocks):
            if block is not None and block.name in collection and collection[block.name] == block:
                collection.remove(block)
        self.blocks.clear()


def _image(created: _Created, path: Path, colorspace: str, pack: bool) -> bpy.types.Image:
    image = bpy.data.images.load(str(path.resolve()), check_existing=False)  # absolute: see blender-notes
    created.add(bpy.data.images, image)
    image.colorspace_settings.name = colorspace
    if pack:
        image.pack()
    return image


def build_mesh(created: _Created, name: str, bundle: Bundle) -> bpy.types.Mesh:
    """The export's mesh.glb as a Blender mesh (Z up) with a UV map and smooth shading."""
    path = bundle.require("mesh_glb", EXPORT_HINT)
    try:
        tri = read_glb(path)
    except (GLBError, KeyError, IndexError, ValueError) as exc:
        raise BundleError(f"{path}: {exc}") from None
    verts = (tri.vertices @ frames.GLTF_TO_BLENDER.T).astype(np.float32)
    faces = tri.faces.astype(np.int32)
    nf = len(faces)
    me = created.add(bpy.data.meshes, bpy.data.meshes.new(name))
    me.vertices.add(len(verts))
    me.vertices.foreach_set("co", verts.ravel())
    me.loops.add(nf * 3)
    me.loops.foreach_set("vertex_index", faces.ravel())
    me.polygons.add(nf)
    me.polygons.foreach_set("loop_start", np.arange(0, nf * 3, 3, dtype=np.int32))
    if tri.uvs is not None:
        uv = tri.uvs.astype(np.float32).copy()
        uv[:, 1] = 1.0 - uv[:, 1]  # glTF puts v = 0 at the top of the image, Blender at the bottom
        me.uv_layers.new(name="UVMap").data.foreach_set("uv", uv[faces.ravel()].ravel())
    me.polygons.foreach_set("use_smooth", np.ones(nf, dtype=bool))
    me.update(calc_edges=True)
    me.validate()
    return me


def _use_nodes(block: bpy.types.Material | bpy.types.World) -> None:
    """Give the block its node tree (Blender 5.0 always has one and deprecates `use_nodes`)."""
    if bpy.app.version < (5, 0, 0):
        block.use_nodes = True


def build_material(created: _Created, name: str, bundle: Bundle, options: ImportOptions) -> bpy.types.Material:
    """Principled BSDF, diffuse only (the engine's albedo is Lambertian), albedo texture on Base Color."""
    texture = (options.hires_texture and bundle.file("albedo_hires")) or bundle.require("albedo")
    image = _image(created, texture, "Non-Color" if options.linear_albedo else "sRGB", options.pack_images)
    mat = created.add(bpy.data.materials, bpy.data.materials.new(name))
    _use_nodes(mat)
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    bsdf = next(n for n in nodes if n.type == "BSDF_PRINCIPLED")
    bsdf.inputs["Roughness"].default_value = 1.0
    specular = bsdf.inputs.get("Specular IOR Level") or bsdf.inputs.get("Specular")
    specular.default_value = 0.0
    tex = nodes.new("ShaderNodeTexImage")
    tex.image = image
    tex.interpolation = "Linear"
    tex.extension = "EXTEND"
    tex.location = (bsdf.location.x - 400, bsdf.location.y)
    uvmap = nodes.new("ShaderNodeUVMap")
    uvmap.uv_map = "UVMap"
    uvmap.location = (tex.location.x - 250, tex.location.y)
    links.new(uvmap.outputs["UV"], tex.inputs["Vector"])
    links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    return mat


def build_sun(created: _Created, name: str, sun: dict) -> bpy.types.Object:
    """A shadowless Sun along the estimated direction with strength π·k_d (the engine casts no shadows)."""
    data = created.add(bpy.data.lights, bpy.data.lights.new(name, "SUN"))
    data.energy = float(sun["cycles_strength"])
    data.use_shadow = False
    data.angle = 0.0
    ob = created.add(bpy.data.objects, bpy.data.objects.new(name, data))
    ob.rotation_mode = "QUATERNION"
    ob.rotation_quaternion = Vector(frames.gltf_direction(sun["direction"])).to_track_quat("-Z", "Y")
    return ob


def build_world(created: _Created, name: str, ambient: dict) -> bpy.types.World:
    """A white world of strength k_a: the ambient term lights every open surface by albedo·k_a."""
    world = created.add(bpy.data.worlds, bpy.data.worlds.new(name))
    _use_nodes(world)
    bg = next(n for n in world.node_tree.nodes if n.type == "BACKGROUND")
    bg.inputs["Color"].default_value = (1.0, 1.0, 1.0, 1.0)
    bg.inputs["Strength"].default_value = float(ambient["world_strength"])
    return world


def build_camera(created: _Created, name: str, bundle: Bundle, placement: frames.Placement) -> bpy.types.Object:
    """A camera at the estimated input view; rendered square, it shows the object as in the photo."""
    cam_info, view = bundle.data["camera"], bundle.data["view"]
    data = created.add(bpy.data.cameras, bpy.data.cameras.new(name))
    data.sensor_fit = "AUTO"
    data.angle = frames.camera_angle(bundle.image_size, float(cam_info.get("fov_deg", 10.0)))
    data.clip_start = 0.05 * placement.scale
    data.clip_end = 100.0 * placement.scale
    ob = created.add(bpy.data.objects, bpy.data.objects.new(name, data))
    matrix = frames.camera_matrix(view["rotation_deg"], view["translation"],
                                  float(cam_info.get("rot_center_depth", 1.0)), placement)
    ob.matrix_world = Matrix(matrix.tolist())
    return ob


def _id_value(value):
    """A JSON value as something an ID property accepts (drops None and non-finite numbers)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        out = {str(k): v for k, v in ((k, _id_value(v)) for k, v in value.items()) if v is not None}
        return out or None
    if isinstance(value, list | tuple):
        items = [_id_value(v) for v in value]
        if items and all(isinstance(v, int | float) for v in items):
            return items
    return None


def set_properties(block: bpy.types.ID, bundle: Bundle) -> None:
    """Bundle path, preset, metrics and light as custom properties, so the result stays traceable."""
    block[PROP_PREFIX + "bundle"] = str(bundle.root)
    block[PROP_PREFIX + "preset"] = str(bundle.data.get("preset", ""))
    for key in ("metrics", "light"):
        value = _id_value(bundle.data.get(key) or {})
        if value:
            block[PROP_PREFIX + key] = value


@dataclass
class _Built:
    """One bundle's new data-blocks, not yet linked into the scene."""

    collection: bpy.types.Collection
    obj: bpy.types.Object
    world: bpy.types.World | None
    camera: bpy.types.Object | None
    render_side: int


def _build(created: _Created, bundle: Bundle, options: ImportOptions) -> _Built:
    name = bundle.name
    rig = read_light_rig(bundle)
    placement = frames.Placement.from_asset(rig["asset"]["centre"], rig["asset"]["scale"])
    crop = bundle.file("input_full") or bundle.file("input")
    coll = created.add(bpy.data.collections, bpy.data.collections.new(name))
    mesh = build_mesh(created, name, bundle)
    mesh.materials.append(build_material(created, name, bundle, options))
    obj = created.add(bpy.data.objects, bpy.data.objects.new(name, mesh))
    coll.objects.link(obj)
    set_properties(obj, bundle)
    set_properties(coll, bundle)
    if options.light:
        coll.objects.link(build_sun(created, f"{name} Sun", rig["sun"]))
    world = build_world(created, f"{name} World", rig["ambient"]) if options.world else None
    camera = build_camera(created, f"{name} Camera", bundle, placement) if options.camera else None
    if camera is not None:
        coll.objects.link(camera)
    return _Built(coll, obj, world, camera, max(png_size(crop)) if crop else bundle.image_size)


def import_bundles(context: bpy.types.Context, paths: list[str | Path],
                   options: ImportOptions | None = None) -> list[bpy.types.Collection]:
    """Import bundles, each into a new collection named after its input image; all or nothing.

    World, scene camera and render size follow the last bundle.
    """
    options = options or ImportOptions()
    bundles = [read_bundle(p) for p in paths]
    created = _Created()
    try:
        built = [_build(created, b, options) for b in bundles]
    except Exception:
        created.remove_all()
        raise
    # Only now is the scene touched; nothing below can fail on the data built above.
    scene = context.scene
    for item in built:
        scene.collection.children.link(item.collection)
        if item.world is not None:
            scene.world = item.world
        if item.camera is not None:
            scene.camera = item.camera
            if options.render_size:
                scene.render.resolution_x = scene.render.resolution_y = item.render_side
                scene.render.resolution_percentage = 100
                scene.render.pixel_aspect_x = scene.render.pixel_aspect_y = 1.0
    for ob in context.view_layer.objects:
        ob.select_set(False)
    for item in built:
        item.obj.select_set(True)
    if built:
        context.view_layer.objects.active = built[-1].obj
    return [item.collection for item in built]
