"""The batch loop: skip complete items, run the rest (in this process or in workers), keep the summary current."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from ..progress import Progress
from .distributed import Ranks, gather_to_main
from .items import BatchItem, shard
from .pool import WorkerPool
from .summary import SUMMARY_NAME, Summary, pending_record
from .work import BatchJob, is_complete, record_from_bundle, run_item


def _crash_record(items: list[BatchItem], index: int, exitcode: int | None) -> dict[str, Any]:
    item = items[index]
    return {**pending_record(item.name, item.image), "status": "failed",
            "error": f"the worker process died (exit code {exitcode}) while reconstructing this image"}


def _execute(todo: list[BatchItem], job: BatchJob, workers: int,
             threads: int) -> Iterator[tuple[BatchItem, dict[str, Any]]]:
    if workers <= 1 or len(todo) <= 1:
        torch.set_num_threads(threads)
        for item in todo:
            yield item, run_item(item, job)
        return
    pool = WorkerPool(functools.partial(run_item, job=job), workers, threads,
                      on_crash=functools.partial(_crash_record, todo))
    for index, record in pool.run(todo):
        yield todo[index], record


def summary_info(job: BatchJob, ranks: Ranks, workers: int, threads: int) -> dict[str, Any]:
    return {"out": str(job.out.resolve()), "preset": job.cfg.preset, "generator": str(job.gan_path),
            "world_size": ranks.world_size, "workers": workers, "threads_per_worker": threads}


def run_batch(job: BatchJob, items: list[BatchItem], ranks: Ranks, workers: int, threads: int,
              progress: Progress) -> Summary:
    """Process this rank's shard of `items`; the summary on disk is rewritten after every item.

    A rank of a torchrun job writes `batch-summary.rank<r>.*`; `merge_summaries` joins them at the end.
    KeyboardInterrupt stops the work (running items abort without leaving a bundle) after the
    summary has been written one last time.
    """
    mine = shard(items, ranks.rank, ranks.world_size)
    job.out.mkdir(parents=True, exist_ok=True)
    stem = f"{SUMMARY_NAME}.rank{ranks.rank}" if ranks.distributed else SUMMARY_NAME
    summary = Summary(job.out, [pending_record(i.name, i.image) for i in mine],
                      summary_info(job, ranks, workers, threads), stem)
    progress.start(len(mine), images=len(mine), rank=ranks.rank, world_size=ranks.world_size, workers=workers)
    todo = []
    for item in mine:
        data = is_complete(item, job)
        if data is None:
            todo.append(item)
        else:
            summary.update({**record_from_bundle(item, job, data, "skipped", None), "rank": ranks.rank}, write=False)
            progress.advance(1, item=item.name, status="skipped")
    summary.write()
    try:
        for item, record in _execute(todo, job, workers, threads):
            summary.update({**record, "rank": ranks.rank})
            progress.advance(1, item=item.name, status=record["status"], seconds=record["seconds"],
                             error=record["error"])
    except KeyboardInterrupt:
        _record_unreported(summary, todo, job, ranks)
        raise
    finally:
        summary.write()
    return summary


def _record_unreported(summary: Summary, todo: list[BatchItem], job: BatchJob, ranks: Ranks) -> None:
    """After Ctrl-C: items whose bundle was completed just before the stop, but not reported, are done."""
    for item in todo:
        if summary.records[item.name]["status"] == "pending":
            data = is_complete(item, job)
            if data is not None:
                summary.update({**record_from_bundle(item, job, data, "done", None), "rank": ranks.rank}, write=False)


def merge_summaries(summary: Summary, items: list[BatchItem], ranks: Ranks) -> Summary | None:
    """In a torchrun job: every rank's records joined on rank 0 into `batch-summary.*` (item order);
    the per-rank files are removed. Returns the merged summary on rank 0, None elsewhere."""
    if not ranks.distributed:
        return summary
    gathered = gather_to_main(list(summary.records.values()), ranks)
    for path in (summary.json_path, summary.csv_path):
        Path(path).unlink(missing_ok=True)
    if gathered is None:
        return None
    by_name = {r["name"]: r for records in gathered for r in records}
    merged = Summary(summary.json_path.parent, [by_name[i.name] for i in items], summary.info)
    merged.write()
    return merged
