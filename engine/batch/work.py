"""One batch item: is its bundle already complete, and if not, reconstruct it and describe the outcome.

An item is complete when its bundle validates, was made from an input with the same sha256, with the
same resolved config (the device aside: it may differ between ranks), generator, latent and mask, and
holds the mesh files when export is on. Such items are skipped on a rerun, so a batch is resumable.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import bundle
from ..config import Config, config_to_dict
from ..errors import EngineError
from ..progress import Progress
from .items import BatchItem
from .summary import flatten_metrics, pending_record

log = logging.getLogger(__name__)
LATENT_SUFFIX = ".pt"
MASK_SUFFIX = ".png"


@dataclass(frozen=True)
class BatchJob:
    """Everything an item needs besides its image (picklable: sent to worker processes)."""

    cfg: Config
    out: Path
    gan_path: Path  # the resolved generator checkpoint
    latent_dir: Path | None = None
    mask_dir: Path | None = None
    depth_gt_dir: Path | None = None
    resume: bool = False  # continue an item's interrupted training from its saved state
    export: bool = True


def comparable_config(config: dict[str, Any]) -> dict[str, Any]:
    """The resolved config as JSON would return it, without the device."""
    return {k: v for k, v in json.loads(json.dumps(config)).items() if k != "device"}


def _companion(folder: Path | None, item: BatchItem, suffixes: tuple[str, ...]) -> Path | None:
    """`folder/<image stem><suffix>` for the first suffix that exists; EngineError if the folder has none."""
    if folder is None:
        return None
    for suffix in suffixes:
        path = folder / f"{item.image.stem}{suffix}"
        if path.is_file():
            return path
    raise EngineError(f"no {' or '.join(suffixes)} file for image {item.image.name} in {folder}")


def companions(item: BatchItem, job: BatchJob) -> tuple[Path | None, Path | None, Path | None]:
    """(latent, mask, ground-truth depth) of an item from the job's folders."""
    return (_companion(job.latent_dir, item, (LATENT_SUFFIX,)), _companion(job.mask_dir, item, (MASK_SUFFIX,)),
            _companion(job.depth_gt_dir, item, (".npy", ".png")))


def _resolved(path: Path | None) -> str | None:
    return None if path is None else str(Path(path).resolve())


def is_complete(item: BatchItem, job: BatchJob) -> dict[str, Any] | None:
    """The bundle's result.json if the item's bundle is complete for this input and job, else None."""
    root = job.out / item.name
    if not (root / bundle.RESULT_FILE).is_file():
        return None
    try:
        data = bundle.read(root)
        latent, mask, _ = companions(item, job)
        same = (data["input"].get("sha256") == bundle.sha256_file(item.image)
                and comparable_config(data["config"]) == comparable_config(config_to_dict(job.cfg))
                and data.get("generator", {}).get("path") == str(job.gan_path)
                and data["input"].get("latent") == _resolved(latent)
                and data["input"].get("mask") == _resolved(mask)
                and (not job.export or "mesh_glb" in data["files"]))
    except (EngineError, OSError, KeyError, TypeError, AttributeError):
        return None
    return data if same else None


def record_from_bundle(item: BatchItem, job: BatchJob, data: dict[str, Any], status: str, seconds: float | None,
                       warnings: list[str] | None = None) -> dict[str, Any]:
    glb = data["files"].get("mesh_glb")
    return {**pending_record(item.name, item.image), "status": status, "seconds": seconds, "bundle": item.name,
            "glb": None if glb is None else f"{item.name}/{glb}", "metrics": flatten_metrics(data.get("metrics", {})),
            "warnings": warnings or []}


def _warnings(events: str) -> list[str]:
    found = []
    for line in events.splitlines():
        event = json.loads(line)
        if event.get("event") == "warning":
            found.append(event["message"])
    return found


def run_item(item: BatchItem, job: BatchJob, grad_sync: Callable | None = None, seed_offset: int = 0) -> dict[str, Any]:
    """Reconstruct one image into `job.out/<name>`; a failure becomes a `failed` record, never an exception.

    KeyboardInterrupt passes through: the bundle is written atomically, so none is left half-done.
    `grad_sync` and `seed_offset` go to the pipeline's Request (shared-weights group mode).
    """
    from ..pipeline.run import Request, reconstruct

    t0 = time.perf_counter()
    events = io.StringIO()
    try:
        latent, mask, depth_gt = companions(item, job)
        req = Request(image=item.image, out=job.out / item.name, cfg=job.cfg, latent=latent, mask=mask,
                      depth_gt=depth_gt, weights=str(job.gan_path), resume=job.resume, export=job.export,
                      grad_sync=grad_sync, seed_offset=seed_offset)
        reconstruct(req, Progress(json_mode=True, out=events, min_interval=1e9))
        data = bundle.read(job.out / item.name)
    except Exception as exc:  # one bad image must not stop the batch
        if not isinstance(exc, EngineError):
            log.exception("%s failed", item.image)
        message = str(exc) if isinstance(exc, EngineError) else f"{type(exc).__name__}: {exc}"
        return {**pending_record(item.name, item.image), "status": "failed", "error": message,
                "seconds": round(time.perf_counter() - t0, 3), "warnings": _warnings(events.getvalue())}
    return record_from_bundle(item, job, data, "done", round(time.perf_counter() - t0, 3), _warnings(events.getvalue()))
