"""Run the engine (`python -m engine ... --json`) in its own interpreter and read its JSON-line events.

The engine needs torch, which must never be imported into Blender's Python, so it runs as a
subprocess. Two reader threads only move lines into a queue; everything else (parsing, bpy) happens
on the caller's thread through `poll()`. This module does not import bpy, so it is testable anywhere.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

STDERR_TAIL = 40


@dataclass
class JobOutcome:
    """What a finished (or cancelled) engine run produced."""

    returncode: int | None
    results: list[dict] = field(default_factory=list)
    error: str | None = None
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        return not self.cancelled and self.error is None and self.returncode == 0


class EngineJob:
    """One engine subprocess; `start`, then `poll` until `done` (GUI), or `run_blocking` (headless)."""

    def __init__(self, argv: Sequence[str], cwd: str | None = None, env: dict[str, str] | None = None):
        self.argv = list(argv)
        self.cwd = cwd
        self.extra_env = dict(env or {})
        self.proc: subprocess.Popen | None = None
        self.last_progress: dict | None = None
        self.results: list[dict] = []
        self.warnings: list[str] = []
        self.error: str | None = None
        self.cancelled = False
        self._queue: queue.Queue[tuple[str, str | None]] = queue.Queue()
        self._stderr: deque[str] = deque(maxlen=STDERR_TAIL)
        self._threads: list[threading.Thread] = []
        self._open_streams = 0

    def start(self) -> None:
        # Blender's PYTHONHOME/PYTHONPATH would make the engine's interpreter load Blender's stdlib.
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH")}
        env.update(self.extra_env, PYTHONUNBUFFERED="1")
        try:
            self.proc = subprocess.Popen(
                self.argv, cwd=self.cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace", bufsize=1,
            )
        except OSError as exc:
            self.error = f"cannot start the engine ({self.argv[0]}): {exc.strerror or exc}"
            return
        for stream, tag in ((self.proc.stdout, "out"), (self.proc.stderr, "err")):
            thread = threading.Thread(target=self._pump, args=(stream, tag), daemon=True)
            thread.start()
            self._threads.append(thread)
        self._open_streams = 2

    def _pump(self, stream, tag: str) -> None:
        for line in stream:
            self._queue.put((tag, line.rstrip("\r\n")))
        self._queue.put((tag, None))

    def poll(self) -> list[dict]:
        """Drain what arrived so far (never blocks); returns the new stdout events in order."""
        events = []
        while True:
            try:
                tag, line = self._queue.get_nowait()
            except queue.Empty:
                return events
            if line is None:
                self._open_streams -= 1
            elif tag == "err":
                if line.strip():
                    self._stderr.append(line)
            else:
                event = self._parse(line)
                if event is not None:
                    events.append(event)

    def _parse(self, line: str) -> dict | None:
        try:
            event = json.loads(line)
        except ValueError:
            return None  # a stray print: not part of the protocol
        if not isinstance(event, dict):
            return None
        kind = event.get("event")
        if kind == "progress":
            self.last_progress = event
        elif kind == "result":
            self.results.append(event)
        elif kind == "warning":
            self.warnings.append(str(event.get("message", "")))
        elif kind == "error":
            self.error = str(event.get("message", "engine error"))
        return event

    @property
    def done(self) -> bool:
        """True once the process has exited and both of its streams are fully read."""
        if self.proc is None:
            return True
        return self.proc.poll() is not None and self._open_streams <= 0 and self._queue.empty()

    def cancel(self, grace_s: float = 5.0) -> None:
        """Stop the engine: terminate, then kill if it does not exit within `grace_s`."""
        self.cancelled = True
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def outcome(self) -> JobOutcome:
        """Summarise a finished run; an engine that exits non-zero without an error event is a failure too."""
        rc = None if self.proc is None else self.proc.poll()
        error = self.error
        if error is None and not self.cancelled and rc != 0:
            tail = self.stderr_tail()
            error = tail.splitlines()[-1] if tail else f"engine exited with code {rc}"
        if error is None and not self.cancelled and not self.results:
            error = "the engine finished without a result"
        return JobOutcome(returncode=rc, results=list(self.results), error=error, cancelled=self.cancelled)

    def stderr_tail(self) -> str:
        return "\n".join(self._stderr)

    def run_blocking(self, on_event: Callable[[dict], None] | None = None, tick: float = 0.05,
                     timeout: float | None = None) -> JobOutcome:
        """Start and wait, forwarding events; the headless path (timers never fire in background mode)."""
        self.start()
        t0 = time.monotonic()
        while not self.done:
            for event in self.poll():
                if on_event is not None:
                    on_event(event)
            if timeout is not None and time.monotonic() - t0 > timeout:
                self.cancel()
                self.error = f"the engine did not finish within {timeout:.0f} s"
                break
            time.sleep(tick)
        for event in self.poll():
            if on_event is not None:
                on_event(event)
        return self.outcome()


def status_text(progress: dict | None) -> str:
    """One status-bar line from a progress event: stage/step, iteration and ETA."""
    if not progress:
        return "starting the engine…"
    parts = []
    if progress.get("item") is not None:
        parts.append(f"image {progress['item']}")
    if progress.get("stage") is not None:
        parts.append(f"stage {progress['stage']}")
    if progress.get("step") is not None:
        parts.append(f"{progress['step']}")
    if progress.get("iter") is not None and progress.get("total"):
        parts.append(f"{progress['iter']}/{progress['total']}")
    frac = float(progress.get("fraction") or 0.0)
    parts.append(f"{100 * frac:.0f}%")
    eta = progress.get("eta_s")
    if eta is not None:
        eta = float(eta)
        parts.append(f"ETA {int(eta // 60)}:{int(eta % 60):02d}")
    return "  ".join(parts)


def venv_python(root: Path) -> Path:
    """The interpreter of the virtual environment `root/.venv` (Windows or POSIX layout)."""
    if sys.platform == "win32":
        return root / ".venv" / "Scripts" / "python.exe"
    return root / ".venv" / "bin" / "python"


def project_root_of(python: str | Path) -> Path | None:
    """The project folder of an interpreter inside `<root>/.venv`, if that folder holds the engine."""
    path = Path(python)
    for parent in path.parents:
        if parent.name == ".venv":
            root = parent.parent
            return root if (root / "engine" / "__init__.py").is_file() else None
    return None


def detect_engine_python(hints: Sequence[str | Path] = ()) -> str:
    """Best guess for the engine's interpreter: $GAN2SHAPE_PYTHON, else the .venv of a project folder
    found from $GAN2SHAPE_ROOT, the given hints (e.g. where the add-on was built) or the current
    directory and their parents. Returns "" when nothing is found."""
    explicit = os.environ.get("GAN2SHAPE_PYTHON")
    if explicit and Path(explicit).is_file():
        return explicit
    starts = [os.environ.get("GAN2SHAPE_ROOT", ""), *map(str, hints), os.getcwd()]
    for start in filter(None, starts):
        for folder in (Path(start), *Path(start).parents):
            candidate = venv_python(folder)
            if (folder / "engine" / "__init__.py").is_file() and candidate.is_file():
                return str(candidate)
    return ""


class EngineUnavailable(RuntimeError):
    """The interpreter cannot run the engine; the message says why."""


def engine_info(python: str, env: dict[str, str] | None = None, timeout: float = 120.0) -> dict:
    """`python -m engine info --json` parsed (one JSON document, not events)."""
    if not python:
        raise EngineUnavailable("no engine interpreter configured and no project .venv found")
    run_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH")}
    run_env.update(env or {})
    root = project_root_of(python)
    try:
        proc = subprocess.run([python, "-m", "engine", "info", "--json"], capture_output=True, text=True,
                              timeout=timeout, env=run_env, cwd=str(root) if root else None, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EngineUnavailable(f"cannot run {python}: {exc}") from None
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        raise EngineUnavailable(lines[-1] if lines else f"engine info exited with code {proc.returncode}")
    try:
        return json.loads(proc.stdout)
    except ValueError:
        raise EngineUnavailable("engine info did not print JSON") from None


@dataclass
class ReconstructRequest:
    """What the user asked for: one engine run per image, bundles kept under `out_root`."""

    python: str
    images: list[str]
    out_root: str
    preset: str = "default"
    device: str = "auto"
    latent: str = ""
    mask: str = ""
    overrides: list[str] = field(default_factory=list)  # extra `--set key=value` config overrides
    env: dict[str, str] = field(default_factory=dict)


def reconstruct_argv(req: ReconstructRequest, image: str, out_dir: Path) -> list[str]:
    """Command line of `python -m engine reconstruct` for one image (see engine/commands/reconstruct.py)."""
    argv = [req.python, "-m", "engine", "reconstruct", image, "--out", str(out_dir), "--preset", req.preset,
            "--device", req.device, "--json"]
    if req.latent:
        argv += ["--latent", req.latent]
    if req.mask:
        argv += ["--mask", req.mask]
    for item in req.overrides:
        argv += ["--set", item]
    return argv


def _unique_dir(parent: Path, name: str) -> Path:
    candidate, n = parent / name, 1
    while candidate.exists():
        n += 1
        candidate = parent / f"{name}_{n}"
    return candidate


class ReconstructBatch:
    """Images reconstructed one after another in a private work folder under the output folder.

    Bundles move to the output folder only when every image succeeded, so a cancelled or failed
    batch leaves nothing behind (the work folder is deleted). Drive it with `poll()` from a modal
    timer, or with `run_blocking()` headless.
    """

    def __init__(self, req: ReconstructRequest):
        if not req.python:
            raise EngineUnavailable("no engine interpreter configured and no project .venv found")
        if not req.images:
            raise ValueError("no images given")
        if len(req.images) > 1 and (req.latent or req.mask):
            raise ValueError("a latent or mask file belongs to one image: select a single image to use it")
        self.req = req
        self.root = project_root_of(req.python)
        self.work: Path | None = None
        self.index = 0
        self.job: EngineJob | None = None
        self.produced: list[Path] = []
        self.warnings: list[str] = []  # the engine's `warning` events, worth showing to the user
        self.error: str | None = None
        self.cancelled = False
        self.finished = False

    def start(self) -> None:
        out_root = Path(self.req.out_root).expanduser()
        out_root.mkdir(parents=True, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(prefix=".gan2shape-run-", dir=out_root))
        self._start_job()

    def _start_job(self) -> None:
        image = self.req.images[self.index]
        out_dir = self.work / f"{self.index:03d}_{Path(image).stem}"
        self.job = EngineJob(reconstruct_argv(self.req, image, out_dir),
                             cwd=str(self.root) if self.root else None, env=self.req.env)
        self.job.start()

    @property
    def fraction(self) -> float:
        progress = self.job.last_progress if self.job else None
        inner = float(progress.get("fraction") or 0.0) if progress else 0.0
        return min(1.0, (self.index + inner) / len(self.req.images))

    def status(self) -> str:
        head = f"[{self.index + 1}/{len(self.req.images)}] " if len(self.req.images) > 1 else ""
        return head + status_text(self.job.last_progress if self.job else None)

    @property
    def done(self) -> bool:
        return self.finished or self.cancelled or self.error is not None

    def poll(self) -> list[dict]:
        """Advance: read events, and when the current image is done, start the next one."""
        if self.done or self.job is None:
            return []
        events = self.job.poll()
        if not self.job.done:
            return events
        outcome = self.job.outcome()
        self.warnings += [w for w in self.job.warnings if w not in self.warnings]
        bundle = next((r.get("bundle") for r in reversed(outcome.results) if r.get("bundle")), None)
        if not outcome.ok:
            self._fail(outcome.error or "engine failed")
        elif bundle is None or not (Path(bundle) / "result.json").is_file():
            self._fail(f"the engine reported no readable bundle (got {bundle!r})")
        else:
            self.produced.append(Path(bundle))
            self.index += 1
            if self.index < len(self.req.images):
                self._start_job()
            else:
                self._keep_bundles()
        return events

    def _fail(self, message: str) -> None:
        self.error = message
        self.cleanup()

    def _keep_bundles(self) -> None:
        kept = []
        for path in self.produced:
            name = Path(path).name.split("_", 1)[-1]
            target = _unique_dir(self.work.parent, name)
            os.replace(path, target)
            kept.append(target)
        self.produced = kept
        self.cleanup()
        self.finished = True

    def cancel(self) -> None:
        """Terminate the running engine and delete everything this batch wrote."""
        self.cancelled = True
        if self.job is not None:
            self.job.cancel()
        self.cleanup()

    def cleanup(self) -> None:
        if self.work is not None:
            shutil.rmtree(self.work, ignore_errors=True)
            self.work = None

    def run_blocking(self, on_event: Callable[[dict], None] | None = None, tick: float = 0.05) -> list[Path]:
        """Headless path; Ctrl+C cancels cleanly. Returns the kept bundle folders ([] if failed/cancelled)."""
        try:
            self.start()
            while not self.done:
                for event in self.poll():
                    if on_event is not None:
                        on_event(event)
                time.sleep(tick)
        except KeyboardInterrupt:
            self.cancel()
        except BaseException:
            self.cancel()
            raise
        return self.produced if self.finished else []
