"""Artist-ready assets from a result bundle: object-only mesh, de-lit textures, light rig (docs/export.md)."""

from .exporter import FILE_NAMES, ExportOptions, build_mesh, export_bundle
from .frame import AssetFrame

__all__ = ["FILE_NAMES", "AssetFrame", "ExportOptions", "build_mesh", "export_bundle"]
