"""`export`: meshes (glb/obj), de-lit textures and a light rig from a result bundle (docs/export.md)."""

from __future__ import annotations

import argparse

from ..device import tune_cpu_allocator
from ..export import ExportOptions, export_bundle
from ..progress import Progress

NAME = "export"
HELP = "write a textured object mesh (glb/obj), albedo textures and a light rig into a result bundle"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", help="result bundle directory (holds result.json)")
    add_export_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print a JSON result event")
    parser.set_defaults(func=run)


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    """The export options as flags (shared with commands that export as their last step)."""
    parser.add_argument("--format", choices=("glb", "obj", "both"), default="glb", help="mesh file format(s)")
    parser.add_argument("--resolution", type=int, default=None, metavar="R",
                        help="vertex grid side (default: the bundle's image size; larger upsamples the depth)")
    parser.add_argument("--solid", action="store_true", help="close the relief into a watertight solid")
    parser.add_argument("--thickness", type=float, default=ExportOptions.solid_thickness,
                        help="with --solid: back plate distance behind the relief (asset units, object size 1)")
    parser.add_argument("--decimate", type=int, default=None, metavar="N", help="target face count of the relief")
    parser.add_argument("--no-hires", action="store_true",
                        help="use the network's albedo, not the albedo recovered from the full-resolution photo")
    parser.add_argument("--shaded", action="store_true", help="also write the shaded image as a texture")


def options_from_args(args: argparse.Namespace) -> ExportOptions:
    formats = ("glb", "obj") if args.format == "both" else (args.format,)
    return ExportOptions(formats=formats, resolution=args.resolution, solid=args.solid,
                         solid_thickness=args.thickness, decimate=args.decimate,
                         hires_texture=not args.no_hires, shaded_texture=args.shaded)


def run(args: argparse.Namespace) -> int:
    tune_cpu_allocator()
    written = export_bundle(args.bundle, options_from_args(args))
    if args.json:
        Progress(json_mode=True).result(bundle=args.bundle, files=written)
    else:
        for key, rel in written.items():
            print(f"{key:16s} {rel}")
    return 0
