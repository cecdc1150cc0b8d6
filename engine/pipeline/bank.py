"""The bank of projected samples built after step 2 and consumed by step 3 (spec §1.6).

Instance mode walks the bank in mini-batches and reshuffles when the next batch would run past the
end. QUIRK (official, kept): the read index is advanced *before* the batch is taken, so the first
batch of a freshly collected bank is never used. Joint mode draws a random subset each iteration.
"""

from __future__ import annotations

from typing import Any

import torch

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # images, masks, views, lights


class Bank:
    """Projected images (N×3×S×S), their masks (N×1×S×S) and the views (N×6, V's units) and lights
    (N×4, L's units) their pseudo samples were rendered with, kept on the CPU."""

    def __init__(self, images: torch.Tensor, masks: torch.Tensor, views: torch.Tensor, lights: torch.Tensor,
                 skip_first: bool = True):
        sizes = [t.shape[0] for t in (images, masks, views, lights)]
        if len(set(sizes)) != 1 or sizes[0] == 0:
            raise ValueError(f"bank needs as many masks, views and lights as images (> 0), got {sizes}")
        self.images = images
        self.masks = masks
        self.views = views
        self.lights = lights
        self.index = 0 if skip_first else None

    def __len__(self) -> int:
        return self.images.shape[0]

    def _shuffle(self, generator: torch.Generator) -> None:
        perm = torch.randperm(len(self), generator=generator)
        self.images = self.images[perm]
        self.masks = self.masks[perm]
        self.views = self.views[perm]
        self.lights = self.lights[perm]

    def next_batch(self, batch: int, generator: torch.Generator) -> Batch:
        """Instance mode: the next `batch` samples in bank order, reshuffling at the end."""
        batch = min(batch, len(self))
        self.index = 0 if self.index is None else self.index + batch
        if self.index + batch > len(self):
            self.index = 0
            self._shuffle(generator)
        sl = slice(self.index, self.index + batch)
        return self.images[sl], self.masks[sl], self.views[sl], self.lights[sl]

    def random_batch(self, batch: int, generator: torch.Generator) -> Batch:
        """Joint mode: a random subset of `batch` samples."""
        idx = torch.randperm(len(self), generator=generator)[: min(batch, len(self))]
        return self.images[idx], self.masks[idx], self.views[idx], self.lights[idx]

    def state_dict(self) -> dict[str, Any]:
        return {"images": self.images, "masks": self.masks, "views": self.views, "lights": self.lights,
                "index": -1 if self.index is None else self.index}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Bank:
        bank = cls(state["images"], state["masks"], state["views"], state["lights"])
        bank.index = None if int(state["index"]) < 0 else int(state["index"])
        return bank
