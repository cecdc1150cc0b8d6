"""Batch reconstruction (`python -m engine batch`, docs/batch.md): many images, resumable, multi-process,
torchrun scale-out, and the gradient averaging of the official shared-weights group mode (also used by
`pretrain` under torchrun, with `rank_state` for its per-rank resumable states)."""

from .group import average_gradients, mean_gradients
from .items import BatchItem, list_images, make_items, shard
from .runner import merge_summaries, run_batch
from .shared import run_shared_batch
from .summary import Summary
from .work import BatchJob, is_complete, run_item

__all__ = ["BatchItem", "BatchJob", "Summary", "average_gradients", "is_complete",
           "list_images", "make_items", "mean_gradients", "merge_summaries", "run_batch", "run_item",
           "run_shared_batch", "shard"]
