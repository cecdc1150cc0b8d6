"""Gradient averaging of the official shared-weights group mode (spec §1.9, `share_weight: true`).

Officially every net is wrapped in DDP: each rank fits its own image (`independent`) or the same image
with its own pseudo samples, and after every backward the gradients are averaged over the ranks, so
one shared model learns from the whole group. `average_gradients` does that across processes (call it
between `loss.backward()` and `optimizer.step()`); `mean_gradients` gives the same gradient in one
process from the per-image losses of the group (the single-device emulation the spec asks for).
`assert_same_weights` checks at the end that the ranks really hold one model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping

import torch
import torch.distributed as dist

from ..errors import EngineError
from .distributed import Ranks, all_gather


def _trainable(params: Iterable[torch.nn.Parameter]) -> list[torch.nn.Parameter]:
    return [p for p in params if p.requires_grad]


def average_gradients(params: Iterable[torch.nn.Parameter], group=None) -> None:
    """Replace every `.grad` by its mean over the ranks of `group`, in one all-reduce.

    Every rank must pass the same parameters in the same order. As DDP with unused parameters
    allowed: a rank that did not use a parameter contributes zeros, and a parameter no rank used
    keeps `grad = None` (so the optimiser leaves it alone).
    """
    params = _trainable(params)
    if not params:
        return
    world = dist.get_world_size(group)
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    used = torch.tensor([p.grad is not None for p in params], dtype=grads[0].dtype, device=grads[0].device)
    flat = torch.cat([*(g.reshape(-1) for g in grads), used])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
    flat /= world
    offset = 0
    for p, g, anyone in zip(params, grads, flat[-len(params):].tolist(), strict=True):
        piece = flat[offset:offset + g.numel()].view_as(g)
        offset += g.numel()
        if anyone == 0:
            p.grad = None
        elif p.grad is None:
            p.grad = piece.clone()
        else:
            p.grad.copy_(piece)


def mean_gradients(params: Iterable[torch.nn.Parameter], losses: Iterable[Callable[[], torch.Tensor]]) -> int:
    """Set `.grad` to the mean of the per-image gradients of a group, one image's graph at a time.

    `losses` yields one closure per image computing that image's loss with the shared model. Equal to
    what `average_gradients` gives when each rank holds one of the images. Returns the group size.
    """
    params = _trainable(params)
    for p in params:
        p.grad = None
    count = 0
    for loss in losses:
        loss().backward()
        count += 1
    if count:
        for p in params:
            if p.grad is not None:
                p.grad /= count
    return count


def weights_digest(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 over a state dict (names in sorted order, shapes, dtypes, bytes): equal digests, equal weights."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def assert_same_weights(module: torch.nn.Module, ranks: Ranks) -> str:
    """The digest of `module`, after checking that every rank holds bit-identical weights (EngineError on
    every rank if not: a shared-weights run whose ranks drifted apart must not be saved as one model)."""
    digests = all_gather(weights_digest(module.state_dict()), ranks)
    if len(set(digests)) > 1:
        differing = [r for r, d in enumerate(digests) if d != digests[0]]
        raise EngineError(f"the ranks' networks diverged (ranks {differing} differ from rank 0) although their "
                          "gradients were averaged; the checkpoint was not written")
    return digests[0]
