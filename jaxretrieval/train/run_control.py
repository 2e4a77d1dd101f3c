"""What reaches a run from outside: stop signals (a preempted VM, `scancel`, Ctrl-C), the one-writer lock on its
output_dir, and the status file a restart loop reads.

A signal only sets a flag; the loop looks at it between steps, so a stop always lands on a step boundary and ends
with a checkpoint of that step. With several processes the flag is agreed on at every step boundary (an allgather
of one integer), so every host stops after the same step and saves it together.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import jax
import numpy as np

from jaxretrieval.errors import InputError
from jaxretrieval.files import atomic_file

STATUS_FILE = "run_status.json"  # {"status": "running" | "finished" | "interrupted" | "diverged", "step": N, ...}
LOCK_FILE = ".lock"
HEARTBEAT_S = 30.0  # the lock holder touches the lock this often; a lock silent for 4 beats is stale


class StopSignals:
    """SIGTERM and SIGINT set `requested` (the signal's name) instead of killing the process; a second signal while
    the run is stopping is reported and ignored, so a save in progress is never cut."""

    def __init__(self):
        self.requested: str | None = None
        self._previous = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():  # Python delivers signals to the main thread
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.requested:
            print(f"{name} again: already stopping, the checkpoint is being written", file=sys.stderr, flush=True)
            return
        self.requested = name
        print(f"{name}: stopping after this step and saving a checkpoint", file=sys.stderr, flush=True)

    def agreed(self) -> bool:
        """Whether any process has been asked to stop; every process gets the same answer."""
        return agree(self.requested is not None)[0]


def agree(*flags: bool) -> list[bool]:
    """Each flag true on every process if it is true on any: one allgather of a few integers on a pod (its clocks
    and signals differ), nothing on one process."""
    mine = np.asarray(flags, np.int32)
    if jax.process_count() == 1:
        return [bool(f) for f in mine]
    from jax.experimental import multihost_utils

    return [bool(f) for f in np.max(multihost_utils.process_allgather(mine), axis=0)]


def write_status(output_dir: Path, status: str, step: int, **extra) -> None:
    if jax.process_index() != 0:
        return
    with atomic_file(output_dir / STATUS_FILE, "w") as f:
        json.dump({"status": status, "step": step, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra}, f)
        f.write("\n")


def read_status(output_dir: Path) -> dict | None:
    path = Path(output_dir) / STATUS_FILE
    return json.loads(path.read_text()) if path.exists() else None


class RunLock:
    """One trainer per output_dir: process 0 holds `output_dir/.lock` (host, pid, start time) and touches it every
    HEARTBEAT_S seconds. A second trainer refuses in one line; a lock whose process is gone (same host) or whose
    heartbeat stopped (another host) is stale and taken over with a warning."""

    def __init__(self, output_dir: Path):
        self.path = Path(output_dir) / LOCK_FILE
        self._stop = threading.Event()
        self._thread = None
        self.held = False

    def acquire(self) -> None:
        if jax.process_index() != 0:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is not None and not self._stale(holder):
                    raise InputError(f"another trainer is writing this run (host {holder.get('host')}, pid "
                                     f"{holder.get('pid')}, since {holder.get('since')}); wait for it to end or "
                                     f"use another output_dir", self.path.parent, field="output_dir") from None
                print(f"warning: taking over a stale lock ({holder})", file=sys.stderr)
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            self._thread = threading.Thread(target=self._beat, daemon=True)
            self._thread.start()
            return
        raise InputError("could not take the run's lock", self.path)

    def _holder(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError):
            return None  # half written or just removed: treat as stale

    def _stale(self, holder: dict) -> bool:
        if holder.get("host") == socket.gethostname():
            try:
                os.kill(int(holder.get("pid", -1)), 0)
            except (ProcessLookupError, ValueError):
                return True
            except PermissionError:
                return False
            return False
        try:
            return time.time() - self.path.stat().st_mtime > 4 * HEARTBEAT_S
        except FileNotFoundError:
            return True

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except FileNotFoundError:
                return

    def release(self) -> None:
        if not self.held:
            return
        self._stop.set()
        self.path.unlink(missing_ok=True)
        self.held = False
