"""GAN2Shape for Blender: turn a photo into a textured, lit 3D object with the GAN2Shape engine.

Works as a legacy add-on (bl_info) and as a Blender 4.2+ extension (blender_manifest.toml). The
engine runs in its own Python (torch never enters Blender); see docs/addon.md.
"""

from __future__ import annotations

import bpy

from . import operators, preferences, ui

bl_info = {
    "name": "GAN2Shape: Image to 3D",
    "author": "GAN2Shape for Blender team",
    "version": (0, 1, 0),
    "blender": (4, 2, 0),
    "location": "File > Import > Image to 3D (GAN2Shape); 3D View > Sidebar > GAN2Shape",
    "description": "Reconstruct a textured mesh, light and camera from one photo with a 2D GAN",
    "category": "Import-Export",
}

CLASSES = (*preferences.CLASSES, *operators.CLASSES, *ui.CLASSES)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.TOPBAR_MT_file_import.append(operators.menu_import)


def unregister() -> None:
    operators.cancel_running()
    bpy.types.TOPBAR_MT_file_import.remove(operators.menu_import)
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
