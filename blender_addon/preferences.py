"""Add-on preferences: which interpreter runs the engine, and the engine's defaults."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import bpy
from bpy.props import EnumProperty, StringProperty

from . import engine_job

DEVICES = [
    ("auto", "Auto", "CUDA when available, else CPU"),
    ("cuda", "CUDA", "NVIDIA GPU (fails if CUDA is not available)"),
    ("cpu", "CPU", "Processor only"),
]
HINT_FILE = "project.json"  # written by build_addon.py: where the add-on was built from


def build_hints() -> list[str]:
    """Folders to search for the project's .venv: the build-time project folder and the add-on's own."""
    here = Path(__file__).resolve().parent
    hints = [str(here)]
    with contextlib.suppress(OSError, ValueError, KeyError):
        hints.insert(0, json.loads((here / HINT_FILE).read_text(encoding="utf-8"))["project_root"])
    return hints


def get_prefs(context: bpy.types.Context | None = None) -> GAN2ShapePreferences:
    context = context or bpy.context
    return context.preferences.addons[__package__].preferences


def engine_env(prefs: GAN2ShapePreferences) -> dict[str, str]:
    """Environment additions for the engine process (the weights folder)."""
    folder = bpy.path.abspath(prefs.weights_dir).strip()
    return {"GAN2SHAPE_WEIGHTS": str(Path(folder).resolve())} if folder else {}


def engine_python(prefs: GAN2ShapePreferences) -> str:
    """The configured interpreter, or the auto-detected project .venv when the field is empty."""
    configured = bpy.path.abspath(prefs.engine_python).strip()
    return configured or engine_job.detect_engine_python(build_hints())


def summarise_info(info: dict) -> str:
    """The Validate answer in a few lines (engine, torch, device, weights)."""
    weights = info.get("weights", {})
    ok = [n for n, w in weights.items() if w.get("found") and w.get("valid")]
    bad = [n for n, w in weights.items() if w.get("found") and not w.get("valid")]
    lines = [
        f"engine {info.get('engine')}  python {info.get('python')}  torch {info.get('versions', {}).get('torch')}",
        f"device {info.get('device')}  cuda devices: {', '.join(info.get('cuda_devices') or []) or 'none'}"
        f"  threads {info.get('threads')}",
        "weights folders: " + ", ".join(info.get("weights_dirs", [])),
        f"weights valid: {', '.join(ok) or 'none'}" + (f"  invalid: {', '.join(bad)}" if bad else ""),
    ]
    return "\n".join(lines)


class GAN2ShapePreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    engine_python: StringProperty(
        name="Engine Python", subtype="FILE_PATH",
        description="Interpreter of the environment where the engine is installed (empty: the project's .venv)")
    weights_dir: StringProperty(
        name="Weights Folder", subtype="DIR_PATH",
        description="Extra folder searched for checkpoints first (empty: the engine's own weights folder)")
    device: EnumProperty(name="Device", items=DEVICES, default="auto")
    preset: StringProperty(name="Default Preset", default="default",
                           description="Engine preset used when the operator does not name one")
    output_dir: StringProperty(
        name="Output Folder", subtype="DIR_PATH", default=str(Path.home() / "gan2shape"),
        description="Where result bundles are kept (the imported textures point into them)")
    engine_info: StringProperty(name="Engine Info", default="", options={"SKIP_SAVE"})

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.prop(self, "engine_python")
        if not self.engine_python:
            detected = engine_job.detect_engine_python(build_hints())
            layout.label(text=f"Auto-detected: {detected or 'nothing found'}", icon="INFO")
        layout.prop(self, "weights_dir")
        row = layout.row()
        row.prop(self, "device")
        row.prop(self, "preset")
        layout.prop(self, "output_dir")
        layout.operator("gan2shape.validate_engine", icon="CHECKMARK")
        if self.engine_info:
            box = layout.box()
            for line in self.engine_info.splitlines():
                box.label(text=line)


class GAN2SHAPE_OT_validate_engine(bpy.types.Operator):
    """Run `python -m engine info --json` with the configured interpreter and show its answer"""

    bl_idname = "gan2shape.validate_engine"
    bl_label = "Validate Engine"
    bl_options = {"INTERNAL"}  # noqa: RUF012 (Blender reads a plain set)

    def execute(self, context: bpy.types.Context) -> set[str]:
        prefs = get_prefs(context)
        python = engine_python(prefs)
        try:
            info = engine_job.engine_info(python, env=engine_env(prefs))
        except engine_job.EngineUnavailable as exc:
            prefs.engine_info = f"not usable: {exc}"
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        prefs.engine_info = summarise_info(info)
        self.report({"INFO"}, f"engine {info.get('engine')} on {info.get('device')} ({python})")
        return {"FINISHED"}


CLASSES = (GAN2ShapePreferences, GAN2SHAPE_OT_validate_engine)
