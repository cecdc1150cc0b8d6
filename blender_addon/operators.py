"""Operators: reconstruct images with the engine and import the result, or import an existing bundle.

Thin on purpose: the engine run lives in `engine_job` and the scene building in `importer`.
With a UI the reconstruction is modal (timer polling, progress bar, Esc cancels); in background
mode it is synchronous, because timers and modal handlers never run there (docs/addon.md).
"""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import BoolProperty, CollectionProperty, EnumProperty, StringProperty
from bpy_extras.io_utils import ImportHelper

from . import engine_job, preferences
from .bundle import BundleError
from .importer import ImportOptions, import_bundles

IMAGE_GLOB = "*.png;*.jpg;*.jpeg;*.webp;*.bmp;*.tif;*.tiff"
QUALITY = [
    ("PRESET", "As Preset", "Run the preset's schedule unchanged"),
    ("DRAFT", "Draft (fast)", "The 'fast' smoke-test schedule: seconds, rough shape"),
]
RUNNING: set[engine_job.ReconstructBatch] = set()  # batches in flight, cancelled on unregister


class ImportSettings:
    """Import options shared by both operators (a mixin: Blender collects the annotations)."""

    add_camera: BoolProperty(name="Camera", default=True, description="Add a camera at the estimated view")
    render_size: BoolProperty(name="Set Render Size", default=True,
                              description="Square render resolution of the photo's crop (with the camera)")
    add_light: BoolProperty(name="Sun", default=True, description="Add a Sun for the estimated light")
    set_world: BoolProperty(name="World Ambient", default=True,
                            description="A new white world whose strength is the estimated ambient term")
    hires_texture: BoolProperty(name="High-Res Texture", default=True,
                                description="Use the albedo recovered from the full-resolution photo when present")
    linear_albedo: BoolProperty(
        name="Engine-Linear Albedo", default=False,
        description="Read the albedo as linear reflectance (Non-Color), the engine's own image model; "
                    "off: sRGB, as for any photo texture")
    pack_images: BoolProperty(name="Pack Images", default=False, description="Embed the textures in the .blend")

    def import_options(self) -> ImportOptions:
        return ImportOptions(camera=self.add_camera, light=self.add_light, world=self.set_world,
                             pack_images=self.pack_images, linear_albedo=self.linear_albedo,
                             hires_texture=self.hires_texture, render_size=self.render_size)

    def draw_import_settings(self, layout: bpy.types.UILayout) -> None:
        col = layout.column(heading="Import")
        for name in ("add_camera", "render_size", "add_light", "set_world", "hires_texture", "linear_albedo",
                     "pack_images"):
            col.prop(self, name)


def _absolute(path: str) -> str:
    """A Blender path ('//' = the .blend's folder) as an absolute path; '' stays ''."""
    return str(Path(bpy.path.abspath(path)).resolve()) if path else ""


def _import(op: bpy.types.Operator, context: bpy.types.Context, paths: list[Path]) -> set[str]:
    try:
        collections = import_bundles(context, paths, op.import_options())
    except (BundleError, OSError, RuntimeError, KeyError, TypeError, ValueError) as exc:
        # BundleError names the cause; the others mean a malformed result.json (e.g. a missing key).
        op.report({"ERROR"}, f"GAN2Shape import failed: {exc!s}" if isinstance(exc, BundleError | OSError)
                  else f"GAN2Shape import failed: malformed bundle ({type(exc).__name__}: {exc})")
        return {"CANCELLED"}
    op.report({"INFO"}, "GAN2Shape: imported " + ", ".join(c.name for c in collections))
    return {"FINISHED"}


class IMPORT_SCENE_OT_gan2shape_image(bpy.types.Operator, ImportHelper, ImportSettings):
    """Reconstruct 3D shape, albedo, view and light from photos with the GAN2Shape engine, then import them"""

    bl_idname = "import_scene.gan2shape_image"
    bl_label = "Image to 3D (GAN2Shape)"
    bl_options = {"REGISTER", "UNDO"}  # noqa: RUF012 (Blender reads a plain set)

    filter_glob: StringProperty(default=IMAGE_GLOB, options={"HIDDEN"})
    files: CollectionProperty(type=bpy.types.OperatorFileListElement, options={"HIDDEN", "SKIP_SAVE"})
    directory: StringProperty(subtype="DIR_PATH", options={"HIDDEN", "SKIP_SAVE"})
    latent: StringProperty(name="Latent", subtype="FILE_PATH",
                           description="Optional latent file of the image (else the engine projects one)")
    mask: StringProperty(name="Mask", subtype="FILE_PATH", description="Optional object mask (white = object)")
    preset: StringProperty(name="Preset", default="", description="Engine preset (empty: the preferences' default)")
    quality: EnumProperty(name="Speed/Quality", items=QUALITY, default="PRESET")
    overrides: StringProperty(name="Config Overrides", default="",
                              description="Extra engine config keys as key=value, separated by ';' (engine --set)")

    def images(self) -> list[str]:
        folder = Path(bpy.path.abspath(self.directory)) if self.directory else None
        names = [f.name for f in self.files if f.name]
        if folder is not None and names:
            return [str((folder / n).resolve()) for n in names]
        return [_absolute(self.filepath)] if self.filepath else []

    def request(self, context: bpy.types.Context) -> engine_job.ReconstructRequest:
        prefs = preferences.get_prefs(context)
        out_root = bpy.path.abspath(prefs.output_dir) or str(Path.home() / "gan2shape")
        preset = "fast" if self.quality == "DRAFT" else (self.preset or prefs.preset or "default")
        return engine_job.ReconstructRequest(
            python=preferences.engine_python(prefs), images=self.images(), out_root=out_root, preset=preset,
            device=prefs.device, latent=_absolute(self.latent), mask=_absolute(self.mask),
            overrides=[item.strip() for item in self.overrides.split(";") if item.strip()],
            env=preferences.engine_env(prefs))

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.use_property_split = True
        for name in ("latent", "mask", "preset", "quality", "overrides"):
            layout.prop(self, name)
        self.draw_import_settings(layout)

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if self.filepath or len(self.files):
            return self.execute(context)
        return ImportHelper.invoke(self, context, event)

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            batch = engine_job.ReconstructBatch(self.request(context))
        except (engine_job.EngineUnavailable, ValueError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        missing = [p for p in batch.req.images if not Path(p).is_file()]
        if missing:
            self.report({"ERROR"}, f"image not found: {missing[0]}")
            return {"CANCELLED"}
        try:
            if bpy.app.background or context.window is None:
                produced = batch.run_blocking(on_event=lambda _e: print("GAN2Shape:", batch.status(), flush=True))
                return self._conclude(context, batch, produced)
            batch.start()
        except OSError as exc:  # e.g. the output folder cannot be created
            batch.cancel()
            self.report({"ERROR"}, f"GAN2Shape: {exc}")
            return {"CANCELLED"}
        RUNNING.add(batch)
        self._batch = batch
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.25, window=context.window)
        wm.modal_handler_add(self)
        wm.progress_begin(0, 1000)
        return {"RUNNING_MODAL"}

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        batch = self._batch
        if event.type == "ESC":
            batch.cancel()
        elif event.type != "TIMER":
            return {"PASS_THROUGH"}
        else:
            batch.poll()
        context.window_manager.progress_update(int(1000 * batch.fraction))
        context.workspace.status_text_set(f"GAN2Shape {batch.status()}  (Esc to cancel)")
        for area in context.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()
        if not batch.done:
            return {"RUNNING_MODAL"}
        self._stop_modal(context)
        return self._conclude(context, batch, batch.produced if batch.finished else [])

    def _stop_modal(self, context: bpy.types.Context) -> None:
        RUNNING.discard(self._batch)
        wm = context.window_manager
        wm.event_timer_remove(self._timer)
        wm.progress_end()
        if context.workspace is not None:
            context.workspace.status_text_set(None)

    def cancel(self, context: bpy.types.Context) -> None:
        """Blender ends the modal operator (e.g. the file is closed): stop the engine too."""
        self._batch.cancel()
        self._stop_modal(context)

    def _conclude(self, context: bpy.types.Context, batch: engine_job.ReconstructBatch,
                  produced: list[Path]) -> set[str]:
        if batch.cancelled:
            self.report({"WARNING"}, "GAN2Shape: cancelled, nothing imported")
            return {"CANCELLED"}
        if batch.error is not None or not produced:
            self.report({"ERROR"}, f"GAN2Shape engine failed: {batch.error or 'no result'}")
            return {"CANCELLED"}
        for warning in batch.warnings:
            self.report({"WARNING"}, f"GAN2Shape engine: {warning}")
        return _import(self, context, produced)


class IMPORT_SCENE_OT_gan2shape_bundle(bpy.types.Operator, ImportHelper, ImportSettings):
    """Import an existing GAN2Shape result bundle (pick its result.json or its folder)"""

    bl_idname = "import_scene.gan2shape_bundle"
    bl_label = "GAN2Shape Bundle"
    bl_options = {"REGISTER", "UNDO"}  # noqa: RUF012 (Blender reads a plain set)

    filename_ext = ".json"
    filter_glob: StringProperty(default="result.json", options={"HIDDEN"})
    directory: StringProperty(subtype="DIR_PATH", options={"HIDDEN", "SKIP_SAVE"})

    def draw(self, context: bpy.types.Context) -> None:
        self.layout.use_property_split = True
        self.draw_import_settings(self.layout)

    def execute(self, context: bpy.types.Context) -> set[str]:
        path = bpy.path.abspath(self.filepath) if self.filepath else bpy.path.abspath(self.directory)
        if not path:
            self.report({"ERROR"}, "choose a bundle folder or its result.json")
            return {"CANCELLED"}
        return _import(self, context, [Path(path)])


def menu_import(self, context: bpy.types.Context) -> None:
    self.layout.operator(IMPORT_SCENE_OT_gan2shape_image.bl_idname, text="Image to 3D (GAN2Shape)")
    self.layout.operator(IMPORT_SCENE_OT_gan2shape_bundle.bl_idname, text="GAN2Shape Bundle (result.json)")


def cancel_running() -> None:
    for batch in list(RUNNING):
        batch.cancel()
    RUNNING.clear()


CLASSES = (IMPORT_SCENE_OT_gan2shape_image, IMPORT_SCENE_OT_gan2shape_bundle)
