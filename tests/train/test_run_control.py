"""Stop signals set a flag instead of killing (a second one is ignored), the status file says how a run ended, and
the output_dir lock refuses a live second writer and takes over a dead one's."""

import json
import os
import signal
import subprocess
import sys

import pytest

from jaxretrieval.errors import InputError
from jaxretrieval.train.run_control import LOCK_FILE, RunLock, StopSignals, read_status, write_status


def test_signals_set_a_flag_and_a_second_is_ignored(capsys):
    before = signal.getsignal(signal.SIGTERM)
    with StopSignals() as signals:
        assert not signals.agreed()
        os.kill(os.getpid(), signal.SIGTERM)
        assert signals.requested == "SIGTERM" and signals.agreed()
        os.kill(os.getpid(), signal.SIGINT)
        assert signals.requested == "SIGTERM"
    assert "SIGINT again: already stopping" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is before  # the previous handlers are back


def test_status_file(tmp_path):
    assert read_status(tmp_path) is None
    write_status(tmp_path, "interrupted", 7, reason="SIGTERM")
    status = read_status(tmp_path)
    assert status["status"] == "interrupted" and status["step"] == 7 and status["reason"] == "SIGTERM"


def test_lock_refuses_a_live_writer_and_takes_over_a_dead_one(tmp_path, capsys):
    first = RunLock(tmp_path)
    first.acquire()
    with pytest.raises(InputError, match=rf"another trainer is writing this run .*pid {os.getpid()}"):
        RunLock(tmp_path).acquire()
    first.release()
    assert not (tmp_path / LOCK_FILE).exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / LOCK_FILE).write_text(json.dumps({"host": os.uname().nodename, "pid": int(dead.stdout)}))
    second = RunLock(tmp_path)
    second.acquire()
    assert "stale lock" in capsys.readouterr().err
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    second.release()
