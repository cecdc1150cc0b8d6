"""glTF binary and OBJ/MTL files through trimesh (no hand-written formats).

trimesh writes geometry, normals, UVs and the embedded texture; the glb's JSON tree is extended
through trimesh's `tree_postprocessor` hook with what trimesh does not model: the
KHR_lights_punctual sun, the camera and the ambient term (scene extras).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image
from trimesh.exchange.gltf import export_glb
from trimesh.exchange.obj import export_obj

from ..io import atomic_path
from .mesh import Mesh

HEADER = "GAN2Shape for Blender export"
OBJECT_NAME = "GAN2Shape"


def _trimesh(mesh: Mesh, material: trimesh.visual.material.Material) -> trimesh.Trimesh:
    """trimesh's UV convention is OpenGL's (origin bottom-left): flip v from the glTF convention."""
    uv = np.stack([mesh.uvs[:, 0], 1.0 - mesh.uvs[:, 1]], axis=1)
    return trimesh.Trimesh(mesh.vertices, mesh.faces, vertex_normals=mesh.normals, process=False,
                           visual=trimesh.visual.TextureVisuals(uv=uv, material=material))


def _set_buffer_view_targets(tree: dict) -> None:
    """Mark vertex and index buffer views (a glTF validator hint trimesh leaves open)."""
    for mesh in tree.get("meshes", []):
        for prim in mesh["primitives"]:
            for accessor in prim["attributes"].values():
                tree["bufferViews"][tree["accessors"][accessor]["bufferView"]]["target"] = 34962  # ARRAY_BUFFER
            if "indices" in prim:
                tree["bufferViews"][tree["accessors"][prim["indices"]]["bufferView"]]["target"] = 34963  # ELEMENT_ARRAY


def _add_rig(tree: dict, rig: dict) -> None:
    """Add the sun (KHR_lights_punctual, shining along its node's −Z), the camera and the ambient."""
    sun = rig["sun"]
    tree.setdefault("extensionsUsed", []).append("KHR_lights_punctual")
    tree.setdefault("extensions", {})["KHR_lights_punctual"] = {"lights": [
        {"type": "directional", "name": "Sun", "color": [1.0, 1.0, 1.0], "intensity": sun["gltf_intensity_lux"]}]}
    cam = rig["camera"]
    tree["cameras"] = [{"type": "perspective", "name": "Camera", "perspective": {
        "yfov": math.radians(cam["fov_deg"]), "aspectRatio": 1.0, "znear": 0.01, "zfar": 100.0}}]
    nodes = tree.setdefault("nodes", [])
    first = len(nodes)
    nodes.append({"name": "Sun", "rotation": sun["rotation_xyzw"], "extensions": {"KHR_lights_punctual": {"light": 0}}})
    nodes.append({"name": "Camera", "camera": 0, "translation": cam["position"]})
    scene = tree["scenes"][tree.get("scene", 0)]
    scene.setdefault("nodes", []).extend([first, first + 1])
    scene["extras"] = {**scene.get("extras", {}), "ambient": rig["ambient"], "asset": rig["asset"]}


def write_glb(path: Path, mesh: Mesh, texture: Image.Image, rig: dict, double_sided: bool) -> None:
    """A single .glb: mesh with normals and UVs, the texture embedded as base colour, sun, camera."""
    material = trimesh.visual.material.PBRMaterial(name="albedo", baseColorTexture=texture, metallicFactor=0.0,
                                                   roughnessFactor=1.0, doubleSided=double_sided)
    scene = trimesh.Scene()
    scene.add_geometry(_trimesh(mesh, material), node_name=OBJECT_NAME, geom_name=OBJECT_NAME)

    def postprocess(tree: dict) -> None:
        _set_buffer_view_targets(tree)
        _add_rig(tree, rig)

    data = export_glb(scene, include_normals=True, tree_postprocessor=postprocess)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_obj(obj_path: Path, mtl_path: Path, mesh: Mesh, texture_file: str) -> None:
    """mesh.obj + mesh.mtl whose map_Kd names `texture_file` (an image already in the same folder)."""
    name = Path(texture_file).stem
    placeholder = Image.new("RGB", (1, 1))  # trimesh needs an image to write map_Kd; the real file exists
    material = trimesh.visual.material.SimpleMaterial(image=placeholder, name=name, diffuse=(255, 255, 255, 255),
                                                      ambient=(255, 255, 255, 255), specular=(0, 0, 0, 255))
    text, extra = export_obj(_trimesh(mesh, material), include_normals=True, include_texture=True,
                             return_texture=True, mtl_name=mtl_path.name, header=HEADER)
    mtl = extra[mtl_path.name].decode()
    if f"map_Kd {texture_file}" not in mtl:
        raise RuntimeError(f"trimesh wrote an unexpected texture name into {mtl_path.name}")
    with atomic_path(mtl_path) as tmp:
        tmp.write_text(mtl)
    with atomic_path(obj_path) as tmp:
        tmp.write_text(text)
