"""`info`: versions, device, threads and which known weights are present and valid."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform

import torch

from .. import __version__, weights
from ..device import select_device
from ..errors import EngineError

NAME = "info"
HELP = "show versions, device, threads and which weights are found and valid"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.set_defaults(func=run)


def _version(dist: str) -> str | None:
    """Installed version of a distribution, read from its metadata (no import: bpy is heavy)."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def collect() -> dict:
    """Everything `info` reports, as plain data (used by the add-on's Validate button)."""
    device = select_device("auto")
    found = {}
    for name, entry in weights.manifest().items():
        path = entry.find()
        status: dict = {"file": entry.file, "found": path is not None}
        if path is not None:
            status["path"] = str(path)
            try:
                status["valid"] = True
                status["detail"] = weights.validate(entry, path)
            except EngineError as exc:
                status["valid"] = False
                status["detail"] = str(exc)
        found[name] = status
    return {
        "engine": __version__,
        "python": platform.python_version(),
        "versions": {m: _version(m) for m in ("torch", "torchvision", "numpy", "lpips", "scikit-image", "bpy")},
        "device": str(device),
        "cuda_available": torch.cuda.is_available(),
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "threads": torch.get_num_threads(),
        "weights_dirs": [str(d) for d in weights.weights_dirs()],
        "weights": found,
    }


def run(args: argparse.Namespace) -> int:
    data = collect()
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(f"engine {data['engine']}  python {data['python']}")
    for mod, ver in data["versions"].items():
        print(f"  {mod:12s} {ver or 'not installed'}")
    print(f"device {data['device']}  threads {data['threads']}  cuda devices {data['cuda_devices'] or 'none'}")
    print("weights searched in: " + ", ".join(data["weights_dirs"]))
    for name, st in data["weights"].items():
        if not st["found"]:
            state = "missing"
        else:
            state = ("ok: " if st["valid"] else "INVALID: ") + st["detail"]
        print(f"  {name:20s} {st['file']:40s} {state}")
    return 0
