"""`export_bundle`: a result bundle → mesh files, textures and a light rig, recorded in result.json."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .. import bundle
from ..errors import EngineError
from ..io import atomic_path, write_json
from ..render import Camera, RasterOptions
from .frame import AssetFrame
from .lightrig import light_rig
from .mesh import Mesh, decimate, relief_mesh, solidify
from .texture import hires_albedo, shaded_texture
from .writers import write_glb, write_obj

FORMATS = ("glb", "obj")
# The pipeline overwrites the two leftmost and rightmost depth columns with a constant (spec §2.5
# border clamp): they are not surface, whatever the mask says.
BORDER_COLUMNS = 2
MAX_TEXTURE = 2048  # larger photos are resized: beyond this the texture costs seconds and adds little

# Files export writes into the bundle (keys of result.json["files"] → relative paths; docs/bundle.md).
FILE_NAMES = {"mesh_glb": "mesh.glb", "mesh_obj": "mesh.obj", "mesh_mtl": "mesh.mtl",
              "albedo_hires": "albedo_hires.png", "shaded_texture": "shaded_texture.png",
              "light_rig": "light_rig.json"}


@dataclass(frozen=True)
class ExportOptions:
    """What to export; the defaults give the relief as GAN2Shape produces it, as a glb."""

    formats: tuple[str, ...] = ("glb",)
    resolution: int | None = None  # vertex grid side; None = the bundle's image size
    solid: bool = False
    solid_thickness: float = 0.1  # asset units behind the relief's deepest point
    decimate: int | None = None  # target face count of the relief
    hires_texture: bool = True  # base colour from the full-resolution photo when the bundle has one
    shaded_texture: bool = False  # also write the shaded image as a texture


def _image01(path: Path, mode: str) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert(mode), dtype=np.float32) / 255.0
    except OSError as exc:
        raise EngineError(f"unreadable image: {exc}", path) from exc


def _array(path: Path) -> np.ndarray:
    try:
        return np.load(path)
    except (OSError, ValueError) as exc:  # truncated or not an .npy file
        raise EngineError(f"unreadable .npy array: {exc}", path) from exc


def _square_photo(path: Path) -> np.ndarray:
    """The full-resolution photo as a square float image of at most MAX_TEXTURE pixels a side."""
    try:
        with Image.open(path) as im:
            photo = im.convert("RGB")
    except OSError as exc:
        raise EngineError(f"unreadable image: {exc}", path) from exc
    side = min(max(photo.size), MAX_TEXTURE)
    if photo.size != (side, side):
        photo = photo.resize((side, side), Image.Resampling.LANCZOS)
    return np.asarray(photo, dtype=np.float32) / 255.0


def _view_vector(view: dict) -> np.ndarray:
    """result.json's view (degrees, depth units) → the renderer's 6-vector (radians)."""
    return np.array([*np.radians(view["rotation_deg"]), *view.get("translation", (0.0, 0.0, 0.0))], dtype=np.float32)


def _check(options: ExportOptions) -> None:
    bad = [f for f in options.formats if f not in FORMATS]
    if bad or not options.formats:
        got = ", ".join(options.formats) or "none"
        raise EngineError(f"export formats must be among {', '.join(FORMATS)}, got {got}")
    if options.resolution is not None and not 2 <= options.resolution <= 4096:
        raise EngineError(f"export resolution must be within 2–4096, got {options.resolution}")


def build_mesh(depth: np.ndarray, mask: np.ndarray, fov_deg: float, options: ExportOptions,
               ) -> tuple[Mesh, AssetFrame]:
    """The exported mesh (relief, optionally decimated and closed) and its asset frame."""
    mesh, frame = relief_mesh(depth, mask, fov_deg, options.resolution)
    if options.decimate is not None:
        mesh = decimate(mesh, frame, options.decimate, depth.shape[0], fov_deg)
    if options.solid:
        mesh = solidify(mesh, options.solid_thickness)
    return mesh, frame


def _save_png(path: Path, image01: np.ndarray) -> Image.Image:
    image = Image.fromarray(bundle.to_uint8(image01))
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", compress_level=1)
    return image


def _photo_albedo(root: Path, data: dict, depth: np.ndarray, mask: np.ndarray, albedo: np.ndarray,
                  shading: np.ndarray) -> np.ndarray:
    """The high-resolution albedo from the bundle's full-resolution photo (texture.hires_albedo)."""
    files, camera = data["files"], data["camera"]
    cam = Camera(depth.shape[0], float(camera.get("fov_deg", 10.0)), float(camera.get("rot_center_depth", 1.0)))
    far = RasterOptions(min_depth=camera.get("min_depth", 0.9), max_depth=camera.get("max_depth", 1.1)).far_clamp
    depth_view = _array(root / files["depth_view"]).astype(np.float32)
    return hires_albedo(_square_photo(root / files["input_full"]), albedo, shading, mask, depth, depth_view,
                        _view_vector(data["view"]), cam, far)


def export_bundle(bundle_dir: str | Path, options: ExportOptions | None = None) -> dict[str, str]:
    """Write meshes, textures and the light rig into the bundle; return the files added (key → relative path).

    result.json is rewritten atomically with the new entries in "files" (engine.bundle.add_files).
    """
    options = options or ExportOptions()
    _check(options)
    root = Path(bundle_dir)
    data = bundle.read(root)
    files = data["files"]
    fov = float(data["camera"].get("fov_deg", 10.0))
    depth = _array(root / files["depth"]).astype(np.float64)
    mask = _image01(root / files["mask"], "L") > 0.5
    mask[:, :BORDER_COLUMNS] = mask[:, -BORDER_COLUMNS:] = False
    albedo = _image01(root / files["albedo"], "RGB")
    shading = _array(root / files["shading"]).astype(np.float32)
    mesh, frame = build_mesh(depth, mask, fov, options)
    written: dict[str, str] = {}

    if options.hires_texture and "input_full" in files:
        texture = _photo_albedo(root, data, depth, mask, albedo, shading)
        texture_file = written["albedo_hires"] = FILE_NAMES["albedo_hires"]
        texture_image = _save_png(root / texture_file, texture)
    else:
        texture, texture_file = albedo, files["albedo"]
        texture_image = Image.fromarray(bundle.to_uint8(albedo))
    if options.shaded_texture:
        written["shaded_texture"] = FILE_NAMES["shaded_texture"]
        _save_png(root / FILE_NAMES["shaded_texture"], shaded_texture(texture, shading))

    rig = light_rig(data["light"], frame, fov)
    written["light_rig"] = FILE_NAMES["light_rig"]
    write_json(root / FILE_NAMES["light_rig"], rig)
    if "glb" in options.formats:
        written["mesh_glb"] = FILE_NAMES["mesh_glb"]
        write_glb(root / FILE_NAMES["mesh_glb"], mesh, texture_image, rig, double_sided=not options.solid)
    if "obj" in options.formats:
        written["mesh_obj"], written["mesh_mtl"] = FILE_NAMES["mesh_obj"], FILE_NAMES["mesh_mtl"]
        write_obj(root / FILE_NAMES["mesh_obj"], root / FILE_NAMES["mesh_mtl"], mesh, texture_file)

    bundle.add_files(root, written)
    return written
