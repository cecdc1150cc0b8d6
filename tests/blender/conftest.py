"""Fixtures for the add-on tests in the real bpy module, headless.

Isolation: HOME and BLENDER_USER_* point into a temporary folder before bpy is imported here (the
test modules never import bpy at module level), and are restored when this package is done.
The add-on is installed from the zips that build_addon.py makes, as a user would install it.
The add-on registers no `bpy.app.timers` (a timer that never fires hangs bpy at exit); CI runs
pytest under `timeout` anyway.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXT_MODULE = "bl_ext.user_default.gan2shape"
USER_ENV = ("HOME", "BLENDER_USER_RESOURCES", "BLENDER_USER_CONFIG", "BLENDER_USER_SCRIPTS",
            "BLENDER_USER_EXTENSIONS", "BLENDER_USER_DATAFILES")

if importlib.util.find_spec("bpy") is None:
    pytest.skip("the bpy module is not installed", allow_module_level=True)


@pytest.fixture(scope="package")
def profile(tmp_path_factory):
    """An isolated Blender user profile (HOME and BLENDER_USER_RESOURCES in a temporary folder).

    Set before bpy is first imported here; Blender also reads these variables whenever it resolves a
    user folder, so the isolation holds even if another test imported bpy earlier in the session.
    """
    home = tmp_path_factory.mktemp("blender_home")
    saved = {k: os.environ.get(k) for k in USER_ENV}
    for key in USER_ENV:
        os.environ.pop(key, None)
    os.environ["HOME"] = str(home)
    os.environ["BLENDER_USER_RESOURCES"] = str(home / "blender_user")
    yield home
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="package")
def zips(tmp_path_factory):
    """Both add-on zips, built by build_addon.py with the packager inside the bpy wheel."""
    sys.path.insert(0, str(ROOT))
    try:
        build_addon = importlib.import_module("build_addon")
    finally:
        sys.path.remove(str(ROOT))
    return build_addon.build(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="package")
def bpy_module(profile):
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)  # before installing: it unregisters add-ons
    return bpy


@pytest.fixture(scope="package")
def addon(bpy_module, zips):
    """The add-on installed from the extension zip into the isolated profile and enabled; its module."""
    bpy = bpy_module
    result = bpy.ops.extensions.package_install_files(filepath=str(zips["extension"]), repo="user_default",
                                                      enable_on_install=True)
    assert result == {"FINISHED"}
    module = importlib.import_module(EXT_MODULE)
    configure(bpy, EXT_MODULE)
    yield module
    import addon_utils

    addon_utils.disable(EXT_MODULE)


def configure(bpy, module: str) -> None:
    """Preferences as a user would set them: this project's engine, an output folder in the profile."""
    prefs = bpy.context.preferences.addons[module].preferences
    prefs.engine_python = str(ROOT / ".venv" / "bin" / "python")
    prefs.output_dir = str(Path(os.environ["HOME"]) / "gan2shape_out")


@pytest.fixture
def clean_scene(bpy_module, addon):
    """An empty scene with the add-on still registered (read_factory_settings would unregister it)."""
    bpy = bpy_module
    for coll in (bpy.data.collections, bpy.data.objects, bpy.data.meshes, bpy.data.materials, bpy.data.images,
                 bpy.data.lights, bpy.data.cameras, bpy.data.worlds):
        for block in list(coll):
            coll.remove(block)
    bpy.context.scene.camera = None
    bpy.context.scene.world = None
    return bpy


@pytest.fixture(scope="package")
def stored_bundle(tmp_path_factory):
    """A bundle written by the engine's own code (render, bundle, export): see bundles.py."""
    from .bundles import write_bundle

    return write_bundle(tmp_path_factory.mktemp("stored") / "relief")
