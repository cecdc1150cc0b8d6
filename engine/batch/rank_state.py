"""Resumable multi-process training: every rank keeps its own training state, committed in lockstep.

The Trainer saves its state after every phase, but the ranks do so at slightly different moments, so a
job stopped in between can leave one rank a phase ahead of another; and no rank can resume alone, since
its gradients are averaged with the others'. So each rank keeps two files: `latest` (the Trainer's save)
and `committed` (a hard link to `latest`, made once every rank has saved the same phase). On resume the
ranks take the newest phase that every one of them holds in one of its two files. Ranks are at most one
phase apart, and a rank updates `committed` only after all ranks saved that phase, so such a phase exists.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch.distributed as dist

from ..errors import EngineError
from ..io import atomic_path
from ..pipeline import state as state_io
from .distributed import Ranks, agree, all_gather

STATE_SUFFIX = ".state.pt"


class RankStates:
    """This rank's two state files next to the output file `out`: `.<out name>.rank<r>.{state,committed}.pt`."""

    def __init__(self, out: Path, ranks: Ranks):
        base = state_io.state_path_for(out)
        stem = base.name.removesuffix(STATE_SUFFIX)
        self.latest = base.with_name(f"{stem}.rank{ranks.rank}{STATE_SUFFIX}")
        self.committed = base.with_name(f"{stem}.rank{ranks.rank}.committed.pt")
        self.ranks = ranks

    def commit(self) -> None:
        """After a phase: once every rank has saved it, it becomes this rank's committed state."""
        dist.barrier(group=self.ranks.group)
        with atomic_path(self.committed) as tmp:
            try:
                os.link(self.latest, tmp)  # cheap; the Trainer replaces `latest` by rename, never in place
            except OSError:
                shutil.copyfile(self.latest, tmp)

    def load(self, fingerprint: str) -> dict[str, Any] | None:
        """The state of the newest phase that every rank holds; None when no rank holds any state.

        EngineError on every rank if a state belongs to another run (input, config, seed or rank layout)
        or if the ranks share no phase (e.g. one rank's files were deleted).
        """
        def read() -> dict[int, dict[str, Any]]:
            found: dict[int, dict[str, Any]] = {}
            for path in (self.latest, self.committed):
                if path.exists() and not (path == self.committed and self.latest.exists()
                                          and os.path.samefile(self.latest, path)):
                    state = state_io.load_state(path, fingerprint)
                    found.setdefault(int(state["next_phase"]), state)
            return found

        found = agree(self.ranks, read, "reading its saved training state")
        held = all_gather(sorted(found), self.ranks)
        if not any(held):
            return None
        common = set(held[0]).intersection(*held[1:])
        if not common:
            raise EngineError(f"the ranks' saved training states share no finished phase (phases per rank: {held}); "
                              "run without --resume to start over", self.latest.parent)
        return found[max(common)]

    def remove(self) -> None:
        for path in (self.latest, self.committed):
            path.unlink(missing_ok=True)
