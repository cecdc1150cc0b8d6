"""Worker processes for a batch: each runs items one at a time with its own share of the CPU threads.

Why not concurrent.futures: on Ctrl-C every worker must stop its item through KeyboardInterrupt (so the
atomic bundle writer cleans up), and a worker that dies (out of memory, a crash in native code) must
fail only its item while a replacement carries on. Both need the worker processes in hand. Each
worker reports over its own pipe, written synchronously, so its last word survives its death and
the pipe's end-of-file tells the parent at once that it is gone.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection, wait
from typing import Any

STOP_GRACE_S = 60.0


def _interrupt_once(signum, frame) -> None:
    """The first SIGINT stops the item; later ones (terminal plus parent) must not break its cleanup."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def _worker(fn: Callable[[Any], Any], threads: int, tasks: mp.Queue, conn: Connection) -> None:
    import torch

    from ..device import tune_cpu_allocator

    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # a batch started with Ctrl-C ignored stays so
        signal.signal(signal.SIGINT, _interrupt_once)
    tune_cpu_allocator()
    torch.set_num_threads(threads)
    try:
        while (task := tasks.get()) is not None:
            index, item = task
            conn.send(("start", index, None))
            conn.send(("done", index, fn(item)))
    except KeyboardInterrupt:
        pass
    finally:
        conn.close()


class WorkerPool:
    """`workers` processes pulling (index, item) tasks; `run` yields (index, result) as items finish."""

    def __init__(self, fn: Callable[[Any], Any], workers: int, threads: int,
                 on_crash: Callable[[int, int | None], Any]):
        self.fn, self.workers, self.threads, self.on_crash = fn, workers, threads, on_crash
        self.ctx = mp.get_context("spawn")  # no fork: torch's thread pools do not survive it
        self.tasks: mp.Queue = self.ctx.Queue()
        self.procs: dict[Connection, mp.Process] = {}
        self.running: dict[Connection, int] = {}  # worker → index of the item it works on

    def _spawn(self) -> None:
        reader, writer = self.ctx.Pipe(duplex=False)
        proc = self.ctx.Process(target=_worker, args=(self.fn, self.threads, self.tasks, writer), daemon=True)
        proc.start()
        writer.close()  # the child holds the only writer: its exit is our end-of-file
        self.procs[reader] = proc

    def run(self, items: list[Any]) -> Iterator[tuple[int, Any]]:
        """Yield (index into items, result); a crashed worker's item yields on_crash(index, exitcode)."""
        for index, item in enumerate(items):
            self.tasks.put((index, item))
        for _ in range(self.workers):
            self.tasks.put(None)
        for _ in range(min(self.workers, len(items))):
            self._spawn()
        left = len(items)
        try:
            while left:
                if not self.procs:
                    raise RuntimeError("every batch worker exited before the work was done")
                for reader in wait(list(self.procs)):
                    try:
                        kind, index, payload = reader.recv()
                    except EOFError:
                        lost = self._gone(reader)
                        if lost is not None:
                            left -= 1
                            yield lost
                        continue
                    if kind == "start":
                        self.running[reader] = index
                    else:
                        self.running.pop(reader, None)
                        left -= 1
                        yield index, payload
        except BaseException:
            self.stop()
            raise
        for proc in self.procs.values():
            proc.join()

    def _gone(self, reader: Connection) -> tuple[int, Any] | None:
        """A worker ended; if in the middle of an item, that item failed and a replacement takes over."""
        proc = self.procs.pop(reader)
        proc.join()
        reader.close()
        if reader not in self.running:
            return None
        index = self.running.pop(reader)
        self._spawn()  # takes over the dead worker's share of the queue, stop marker included
        return index, self.on_crash(index, proc.exitcode)

    def stop(self) -> None:
        """Interrupt every worker (each aborts its item cleanly), then wait; kill only the ones that hang."""
        for proc in self.procs.values():
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGINT)
        for proc in self.procs.values():
            proc.join(STOP_GRACE_S)
            if proc.is_alive():
                proc.kill()
                proc.join()
