"""The 3D View sidebar panel (N panel, tab "GAN2Shape")."""

from __future__ import annotations

import bpy

from . import operators, preferences


class VIEW3D_PT_gan2shape(bpy.types.Panel):
    bl_label = "GAN2Shape"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "GAN2Shape"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        prefs = preferences.get_prefs(context)
        python = preferences.engine_python(prefs)
        layout.label(text=f"Engine: {python or 'not found (see preferences)'}",
                     icon="CHECKMARK" if python else "ERROR")
        for batch in operators.RUNNING:
            layout.progress(factor=batch.fraction, text=batch.status())
        col = layout.column(align=True)
        col.operator(operators.IMPORT_SCENE_OT_gan2shape_image.bl_idname, icon="IMAGE_DATA")
        col.operator(operators.IMPORT_SCENE_OT_gan2shape_bundle.bl_idname, icon="FILE_FOLDER",
                     text="Import Bundle")
        obj = context.active_object
        if obj is not None and "gan2shape_bundle" in obj:
            box = layout.box()
            box.label(text=f"Preset: {obj.get('gan2shape_preset', '')}")
            box.label(text=f"Bundle: {obj['gan2shape_bundle']}")


CLASSES = (VIEW3D_PT_gan2shape,)
