"""`batch --group share_weight`: the official shared-weights mode over torchrun ranks (spec §1.9).

All ranks train in lockstep, one group at a time, and `average_gradients` makes every optimiser step
use the mean gradient of the group, so the ranks' nets stay identical (one model per group). The
config's official `independent` key says what a group is:

* `independent: true` (cat, synface): images `g·W … g·W + W−1` form group g; rank r fits image
  `g·W + r` and writes its bundle.
* `independent: false` (car, church): every rank fits the same image with its own pseudo samples
  (W× the batch); only rank 0 writes the bundle, the others work in a scratch folder.

Training seeds are offset by the rank (so the ranks draw different samples); the nets start identical
because they are initialised with the config's seed. Before each group the ranks agree, over one
all-gather, on who takes part: members whose input cannot be read are recorded as failed and left
out (a smaller process group is formed), and a group whose bundles are all complete is skipped. A
failure after that point cannot be survived (the other ranks would wait for its gradients for ever),
so it stops the job with an error; rerunning the command resumes at that group.
"""

from __future__ import annotations

import dataclasses
import io
import tempfile
from pathlib import Path
from typing import Any

import torch.distributed as dist

from ..errors import EngineError
from ..progress import Progress
from .distributed import Ranks, all_gather
from .group import average_gradients
from .items import BatchItem, shard
from .summary import SUMMARY_NAME, Summary, pending_record
from .work import BatchJob, companions, is_complete, record_from_bundle, run_item

GROUP_MODES = ("share_weight",)


def groups_of(items: list[BatchItem], world_size: int, independent: bool) -> list[list[BatchItem]]:
    """Consecutive runs of `world_size` images (`independent`), else one image per group."""
    if independent:
        return [items[i:i + world_size] for i in range(0, len(items), world_size)]
    return [[item] for item in items]


def written_by(items: list[BatchItem], ranks: Ranks, independent: bool) -> list[BatchItem]:
    """The items whose bundle (and summary record) this rank owns."""
    if independent:
        return shard(items, ranks.rank, ranks.world_size)
    return list(items) if ranks.is_main else []


def preflight(item: BatchItem, job: BatchJob) -> str | None:
    """The error that would stop this item before training (unreadable image, mask, latent…), else None."""
    from ..pipeline.run import Request, read_inputs

    try:
        latent, mask, depth_gt = companions(item, job)
        req = Request(image=item.image, out=job.out / item.name, cfg=job.cfg, latent=latent, mask=mask,
                      depth_gt=depth_gt)
        read_inputs(req, Progress(json_mode=True, out=io.StringIO(), min_interval=1e9))
    except Exception as exc:  # reported as the item's failure, like run_item does
        return str(exc) if isinstance(exc, EngineError) else f"{type(exc).__name__}: {exc}"
    return None


def _status(item: BatchItem | None, job: BatchJob) -> dict[str, Any]:
    if item is None:
        return {"member": False}
    error = preflight(item, job)
    return {"member": error is None, "error": error, "complete": error is None and is_complete(item, job) is not None}


def _sync_for(members: list[int], ranks: Ranks):
    """The gradient hook of a group with these member ranks (a smaller process group when some are out)."""
    if len(members) < 2:
        return None, None
    group = ranks.group if len(members) == ranks.world_size else dist.new_group(members, backend="gloo")
    return (lambda params: average_gradients(params, group)), group


def run_shared_batch(job: BatchJob, items: list[BatchItem], ranks: Ranks, info: dict[str, Any],
                     progress: Progress) -> Summary:
    """Every group in turn on all ranks; returns this rank's summary (merge with `merge_summaries`)."""
    if job.resume:
        raise EngineError("--resume is not available with --group (all ranks of a group restart together)")
    independent = job.cfg.independent
    owned = written_by(items, ranks, independent)
    stem = f"{SUMMARY_NAME}.rank{ranks.rank}" if ranks.distributed else SUMMARY_NAME
    job.out.mkdir(parents=True, exist_ok=True)
    summary = Summary(job.out, [pending_record(i.name, i.image) for i in owned],
                      {**info, "group": "share_weight", "independent": independent}, stem)
    summary.write()
    groups = groups_of(items, ranks.world_size, independent)
    progress.start(len(groups), images=len(items), groups=len(groups), rank=ranks.rank, world_size=ranks.world_size)
    for group in groups:
        mine = (group[ranks.rank] if ranks.rank < len(group) else None) if independent else group[0]
        statuses = all_gather(_status(mine, job), ranks)
        if not independent:  # one image: rank 0's view of it decides for everyone
            statuses = [statuses[0]] * ranks.world_size
        members = [r for r, s in enumerate(statuses) if s["member"]]
        todo = not all(statuses[r]["complete"] for r in members)
        sync, process_group = _sync_for(members, ranks) if todo and ranks.distributed else (None, None)
        record = None
        if mine is not None and mine in owned:
            status = statuses[ranks.rank]
            if status["error"] is not None:
                record = {**pending_record(mine.name, mine.image), "status": "failed", "error": status["error"]}
            elif status["complete"]:
                record = record_from_bundle(mine, job, is_complete(mine, job), "skipped", None)
        if todo and ranks.rank in members:
            record = _train(mine, job, record, sync, ranks.rank)
        if record is not None:
            summary.update({**record, "rank": ranks.rank})
        if process_group is not None and process_group is not ranks.group and ranks.rank in members:
            dist.destroy_process_group(process_group)  # a non-member holds only a placeholder
        progress.advance(1, group=[i.name for i in group], status="done" if todo else "skipped")
    return summary


def _train(item: BatchItem, job: BatchJob, record: dict[str, Any] | None, sync, rank: int) -> dict[str, Any] | None:
    """Fit the item as one member of its group and return its record; a member that does not write the
    bundle (it exists already, or rank 0 writes it) only helps, in a scratch folder."""
    writes = record is None and (job.cfg.independent or rank == 0)
    if writes:
        outcome = record = run_item(item, job, grad_sync=sync, seed_offset=rank)
    else:
        with tempfile.TemporaryDirectory(prefix="gan2shape-group-") as scratch:
            outcome = run_item(item, dataclasses.replace(job, out=Path(scratch), export=False),
                               grad_sync=sync, seed_offset=rank)
    if outcome["status"] == "failed":
        raise EngineError(f"{item.name} failed during group training ({outcome['error']}); the job stops because "
                          "the other ranks of its group wait for its gradients. Rerun to resume at this group")
    return record
