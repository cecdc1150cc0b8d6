"""Headless batch conversion: images (through `python -m engine batch`) or bundles → .blend and/or .glb files.

    blender -b --python <add-on folder>/batch_convert.py -- --input DIR --out DIR [--format blend glb] [ENGINE OPTIONS]
    .venv/bin/python blender_addon/batch_convert.py -- --input DIR --out DIR …      (the bpy module)

`--input` is a bundle, a folder of bundles, a folder of images or an image list (a folder may hold both).
Images are reconstructed by the engine's `batch` command into `<out>/bundles` (resumable: a rerun skips
complete bundles); options this script does not know (e.g. `--preset fast --set key=value --workers 2`)
go to the engine. Every bundle becomes `<out>/<bundle name>.blend` / `.glb`, built by the add-on's own
importer (mesh, material, Sun, world, camera), and `<out>/convert-summary.json` lists the outcome.
Exit code: 0 when everything converted, 1 when some items failed (named on stderr), 2 on usage errors.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
from pathlib import Path
from types import ModuleType

import bpy

FORMATS = ("blend", "glb")
BUNDLES_DIR = "bundles"
SUMMARY_FILE = "convert-summary.json"
CLEARED = ("objects", "meshes", "materials", "images", "lights", "cameras", "worlds", "collections")


def addon_package() -> str:
    """Module name of the add-on: the enabled GAN2Shape add-on, else the folder holding this script."""
    for addon in bpy.context.preferences.addons:
        if addon.module.rsplit(".", 1)[-1] == "gan2shape":
            return addon.module
    here = Path(__file__).resolve().parent
    if str(here.parent) not in sys.path:
        sys.path.insert(0, str(here.parent))
    return here.name


def addon_module(package: str, name: str) -> ModuleType:
    return importlib.import_module(f"{package}.{name}")


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="batch_convert.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, required=True, help="bundle(s), images folder or image list")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--format", nargs="+", choices=FORMATS, default=list(FORMATS), help="files per bundle")
    parser.add_argument("--engine-python", default="", help="the engine's interpreter (default: auto-detect)")
    parser.add_argument("--no-pack", action="store_true", help="link textures from the bundles instead of packing")
    parser.add_argument("--linear-albedo", action="store_true", help="engine-linear albedo (see docs/addon.md)")
    parser.add_argument("--no-camera", action="store_true", help="do not add the estimated camera")
    return parser.parse_known_args(argv)


def script_argv() -> list[str]:
    """Arguments after `--` (Blender's own come before it); all of them when run by a plain Python."""
    return sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]


def bundles_in(path: Path) -> list[Path]:
    if (path / "result.json").is_file():
        return [path]
    if not path.is_dir():
        return []
    return sorted(d for d in path.iterdir() if d.is_dir() and (d / "result.json").is_file())


def has_images(path: Path, image_suffixes: set[str]) -> bool:
    if path.is_file():
        return True  # an image list
    return path.is_dir() and not (path / "result.json").is_file() and any(
        p.is_file() and not p.name.startswith(".") and p.suffix.lower() in image_suffixes for p in path.iterdir())


def engine_python(package: str, explicit: str) -> str:
    """--engine-python, else the add-on's preference (when enabled), else the add-on's auto-detection."""
    preferences = addon_module(package, "preferences")
    if explicit:
        return explicit
    addon = bpy.context.preferences.addons.get(package)
    if addon is not None and addon.preferences is not None:
        return preferences.engine_python(addon.preferences)
    return addon_module(package, "engine_job").detect_engine_python(preferences.build_hints())


def run_engine(package: str, python: str, source: Path, bundles: Path, engine_args: list[str]) -> dict:
    """`python -m engine batch` with JSON events (one line per finished image); returns its summary."""
    engine_job = addon_module(package, "engine_job")
    if not python:
        raise SystemExit("error: no engine interpreter found (pass --engine-python)")
    root = engine_job.project_root_of(python)
    job = engine_job.EngineJob([python, "-m", "engine", "batch", str(source), "--out", str(bundles), "--json",
                                *engine_args], cwd=str(root) if root else None)

    def show(event: dict) -> None:
        if event.get("event") == "progress" and event.get("item"):
            print(f"engine: {event['item']} {event.get('status')} ({100 * event.get('fraction', 0):.0f}%)",
                  flush=True)

    try:
        outcome = job.run_blocking(on_event=show)
    except KeyboardInterrupt:  # the engine got the terminal's Ctrl-C too; let it finish cleanly
        if job.proc is not None and job.proc.poll() is None:
            job.proc.send_signal(signal.SIGINT)
            job.proc.wait(60)
        raise
    summary = bundles / "batch-summary.json"
    if outcome.returncode not in (0, 1) or not summary.is_file():
        raise SystemExit(f"error: engine batch failed: {outcome.error or job.stderr_tail()}")
    return json.loads(summary.read_text(encoding="utf-8"))


def empty_scene() -> None:
    """Remove what the previous conversion built (keeps add-ons registered, unlike read_factory_settings)."""
    bpy.data.batch_remove([block for kind in CLEARED for block in getattr(bpy.data, kind)])
    scene = bpy.context.scene
    scene.camera = None
    scene.world = None


def _saved(target: Path, save) -> Path:
    """Write through a temporary sibling so a stopped run never leaves a truncated file at `target`."""
    tmp = target.with_name(f".{target.stem}.tmp{target.suffix}")
    save(tmp)
    os.replace(tmp, target)
    return target


def convert(package: str, bundle: Path, out: Path, formats: list[str], options) -> dict:
    importer = addon_module(package, "importer")
    empty_scene()
    importer.import_bundles(bpy.context, [bundle], options)
    record = {"bundle": str(bundle), "error": None}
    if "blend" in formats:
        record["blend"] = str(_saved(out / f"{bundle.name}.blend", lambda p: bpy.ops.wm.save_as_mainfile(
            filepath=str(p), copy=True, check_existing=False)))
    if "glb" in formats:
        record["glb"] = str(_saved(out / f"{bundle.name}.glb", lambda p: bpy.ops.export_scene.gltf(
            filepath=str(p), export_format="GLB", export_lights=True, export_cameras=True,
            check_existing=False)))
    return record


def main() -> int:
    args, engine_args = parse_args(script_argv())
    package = addon_package()
    importer = addon_module(package, "importer")
    image_suffixes = {g.lstrip("*").lower() for g in addon_module(package, "operators").IMAGE_GLOB.split(";")}
    args.out.mkdir(parents=True, exist_ok=True)
    bundles = bundles_in(args.input)
    records = []
    if has_images(args.input, image_suffixes):
        summary = run_engine(package, engine_python(package, args.engine_python), args.input,
                             args.out / BUNDLES_DIR, engine_args)
        for item in summary["items"]:
            if item["status"] in ("done", "skipped"):
                bundles.append(args.out / BUNDLES_DIR / item["bundle"])
            else:
                records.append({"bundle": None, "image": item["image"], "error": item["error"] or item["status"]})
    elif engine_args:
        raise SystemExit(f"error: unknown options {' '.join(engine_args)} (engine options need images as input)")
    options = importer.ImportOptions(camera=not args.no_camera, pack_images=not args.no_pack,
                                     linear_albedo=args.linear_albedo)
    for path in bundles:
        try:
            records.append(convert(package, path, args.out, args.format, options))
        except (importer.BundleError, OSError, RuntimeError, KeyError, TypeError, ValueError) as exc:
            records.append({"bundle": str(path), "error": f"{type(exc).__name__}: {exc}"})
        print(f"converted: {path.name}" if records[-1]["error"] is None else f"failed: {path.name}", flush=True)
    _saved(args.out / SUMMARY_FILE, lambda p: p.write_text(json.dumps({"items": records}, indent=2) + "\n"))
    failed = [r for r in records if r["error"]]
    for r in failed:
        print(f"failed: {r.get('image') or r['bundle']}: {r['error']}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
