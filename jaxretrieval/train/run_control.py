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

import jax
import numpy as np

from jaxretrieval.errors import InputError
from jaxretrieval.files import atomic_file, create_exclusive, upath

STATUS_FILE = "run_status.json"  # {"status": "running" | "finished" | "interrupted" | "diverged", "step": N, ...}
LOCK_FILE = ".lock"
HEARTBEAT_S = 30.0  # the lock holder rewrites its heartbeat this often; a lock silent for 4 beats is stale


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


def write_status(output_dir: str | os.PathLike, status: str, step: int, **extra) -> None:
    if jax.process_index() != 0:
        return
    with atomic_file(upath(output_dir) / STATUS_FILE, "w") as f:
        json.dump({"status": status, "step": step, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra}, f)
        f.write("\n")


def read_status(output_dir: str | os.PathLike) -> dict | None:
    path = upath(output_dir) / STATUS_FILE
    return json.loads(path.read_text()) if path.exists() else None


class RunLock:
    """One trainer per output_dir (local or gs://): process 0 creates `output_dir/.lock` (host, pid, start time,
    heartbeat) only if absent, and rewrites its heartbeat every HEARTBEAT_S seconds. A second trainer refuses in one
    line; a lock whose process is gone (same host) or whose heartbeat stopped (another host) is stale and taken
    over with a warning."""

    def __init__(self, output_dir: str | os.PathLike):
        self.path = upath(output_dir) / LOCK_FILE
        self._stop = threading.Event()
        self._thread = None
        self.held = False
        self._me: dict = {}

    def acquire(self) -> None:
        if jax.process_index() != 0:
            return
        self._me = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "beat": time.time()}
        for _ in range(2):
            if create_exclusive(self.path, json.dumps(self._me)):
                self.held = True
                self._thread = threading.Thread(target=self._beat, daemon=True)
                self._thread.start()
                return
            holder = self._holder()
            if holder is not None and not self._stale(holder):
                raise InputError(f"another trainer is writing this run (host {holder.get('host')}, pid "
                                 f"{holder.get('pid')}, since {holder.get('since')}); wait for it to end or "
                                 f"use another output_dir", self.path.parent, field="output_dir")
            print(f"warning: taking over a stale lock ({holder})", file=sys.stderr)
            self.path.unlink(missing_ok=True)
        raise InputError("could not take the run's lock", self.path)

    def _holder(self) -> dict | None:
        """The lock's content; None when it is gone, or still unreadable after a moment (a create caught between
        its open and its write reads as empty once, never twice)."""
        for _ in range(2):
            try:
                return json.loads(self.path.read_text())
            except FileNotFoundError:
                return None
            except json.JSONDecodeError:
                time.sleep(0.5)
        return None

    @staticmethod
    def _stale(holder: dict) -> bool:
        if holder.get("host") == socket.gethostname():
            try:
                os.kill(int(holder.get("pid", -1)), 0)
            except (ProcessLookupError, ValueError):
                return True
            except PermissionError:
                return False
            return False
        # another host: its heartbeat, by its clock (hosts of one pod or cluster keep NTP time)
        return time.time() - float(holder.get("beat", 0)) > 4 * HEARTBEAT_S

    def _beat(self) -> None:
        warned = False
        while not self._stop.wait(HEARTBEAT_S):
            try:
                with atomic_file(self.path, "w") as f:
                    json.dump({**self._me, "beat": time.time()}, f)
            except Exception as e:  # noqa: BLE001 -- a storage blip: say so once, keep beating
                if not warned:
                    print(f"warning: could not refresh the run's lock ({type(e).__name__}: {e})", file=sys.stderr)
                    warned = True

    def release(self) -> None:
        if not self.held:
            return
        self._stop.set()
        self._thread.join()  # a heartbeat being written must land before the lock goes
        self.path.unlink(missing_ok=True)
        self.held = False
