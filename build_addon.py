"""Build the Blender add-on zips into dist/: a 4.2+ extension and a legacy add-on.

The extension is validated and built by Blender's own packager, `blender_ext.py`, which ships inside
the bpy wheel (it is GPL, so it is called from the installed wheel, never copied here). The legacy
zip holds one top-level folder with the same files, for `Install from Disk` in any Blender.

    .venv/bin/python build_addon.py [--out dist] [--no-project-hint]

By default the zips record this project folder (project.json), so the installed add-on finds the
project's .venv on this machine without configuration; use --no-project-hint for zips you hand out.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
SOURCE = ROOT / "blender_addon"
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.zip")


class BuildError(RuntimeError):
    pass


def find_packager() -> Path:
    """`bpy/<version>/scripts/addons_core/bl_pkg/cli/blender_ext.py` of the installed bpy wheel."""
    spec = importlib.util.find_spec("bpy")  # locates the package without importing it
    if spec is None or spec.origin is None:
        raise BuildError("the bpy module is not installed in this interpreter (pip install bpy==4.5.15)")
    hits = glob.glob(str(Path(spec.origin).parent / "*" / "scripts" / "addons_core" / "bl_pkg" / "cli"
                         / "blender_ext.py"))
    if not hits:
        raise BuildError(f"blender_ext.py not found inside {Path(spec.origin).parent}")
    return Path(sorted(hits)[-1])


def stage(dest: Path, module: str, project_hint: bool) -> Path:
    """Copy the add-on sources to dest/<module>, plus the optional project hint."""
    target = dest / module
    shutil.copytree(SOURCE, target, ignore=IGNORE)
    if project_hint:
        (target / "project.json").write_text(json.dumps({"project_root": str(ROOT)}) + "\n")
    return target


def run_packager(packager: Path, *args: str) -> None:
    proc = subprocess.run([sys.executable, str(packager), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"blender_ext.py {args[0]} failed:\n{proc.stdout}{proc.stderr}")


def build(out: Path, project_hint: bool = True) -> dict[str, Path]:
    """Build both zips into `out`; returns {"extension": path, "legacy": path}."""
    manifest = tomllib.loads((SOURCE / "blender_manifest.toml").read_text())
    module, version = manifest["id"], manifest["version"]
    packager = find_packager()
    out.mkdir(parents=True, exist_ok=True)
    extension = out / f"{module}-{version}.zip"
    legacy = out / f"{module}-{version}-legacy.zip"
    with tempfile.TemporaryDirectory() as tmp:
        src = stage(Path(tmp), module, project_hint)
        run_packager(packager, "validate", str(src))
        extension.unlink(missing_ok=True)
        run_packager(packager, "build", "--source-dir", str(src), "--output-filepath", str(extension))
        legacy.unlink(missing_ok=True)
        with zipfile.ZipFile(legacy, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(src.rglob("*")):
                if path.is_file():
                    zf.write(path, Path(module) / path.relative_to(src))
    return {"extension": extension, "legacy": legacy}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default: dist/)")
    parser.add_argument("--no-project-hint", action="store_true",
                        help="do not record this project folder in the zips")
    args = parser.parse_args(argv)
    try:
        built = build(args.out, project_hint=not args.no_project_hint)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for kind, path in built.items():
        print(f"{kind:10s} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
