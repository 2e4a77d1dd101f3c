"""What a person watching a run wants: a progress bar, metrics.jsonl, TensorBoard events and a final PNG plot.
Only process 0 writes.

Object storage has no append, so for a gs:// output_dir the log is kept in a local folder and its changed files
uploaded with each checkpoint, every SYNC_S seconds and at the end (files.upload replaces each object at once); a
resumed run first downloads the metrics.jsonl it continues."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import jax
from tqdm import tqdm

from jaxretrieval.files import atomic_file, is_remote, upath, upload

SYNC_S = 30.0  # a remote run's logs are uploaded this often (GCS allows about one write per second per object)


class RunLog:
    def __init__(self, output_dir: str | os.PathLike, start_step: int, total_steps: int):
        self.out = upath(output_dir)
        self.remote = is_remote(output_dir)
        self.enabled = jax.process_index() == 0
        self.start_step, self.total_steps = start_step, total_steps
        self._t0 = self._synced = time.perf_counter()
        self._bar = self._tb = None
        self._uploaded: dict[Path, tuple[int, int]] = {}
        if not self.enabled:
            return
        self.dir = Path(tempfile.mkdtemp(prefix="jaxretrieval-log-")) if self.remote else Path(self.out)
        if self.remote and (self.out / "metrics.jsonl").exists():
            (self.dir / "metrics.jsonl").write_bytes((self.out / "metrics.jsonl").read_bytes())
        drop_replayed_steps(self.dir / "metrics.jsonl", start_step)
        self._jsonl = open(self.dir / "metrics.jsonl", "a", encoding="utf-8")
        self._bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step", file=sys.stderr,
                         dynamic_ncols=True, smoothing=0.3)
        try:
            import tensorflow as tf

            self._tb = tf.summary.create_file_writer(str(self.dir / "tensorboard"))
        except Exception as e:  # TensorBoard is a convenience: never let it stop training
            print(f"warning: TensorBoard logging disabled ({e})", file=sys.stderr)

    def write(self, record: dict[str, Any]) -> None:
        """One JSON object per line; also to TensorBoard (numbers only)."""
        if not self.enabled:
            return
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            import tensorflow as tf

            try:
                with self._tb.as_default(step=int(record["step"])):
                    for key, value in record.items():
                        if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                            tf.summary.scalar(key, float(value))
                self._tb.flush()
            except Exception as e:  # e.g. the tensorboard package missing: keep training, say so once
                print(f"warning: TensorBoard logging disabled ({e})", file=sys.stderr)
                self._tb = None
        if self.remote and time.perf_counter() - self._synced >= SYNC_S:
            self.sync()

    def sync(self) -> None:
        """Upload what changed in the local log folder of a gs:// run, each file replaced whole. A failure is a
        warning, never a stop: logs are a convenience, and only this process writes them (raising here would leave
        the other hosts waiting for it in the next step)."""
        if not (self.enabled and self.remote):
            return
        self._synced = time.perf_counter()
        for file in sorted(p for p in self.dir.rglob("*") if p.is_file()):
            stat = file.stat()
            if self._uploaded.get(file) == (stat.st_size, stat.st_mtime_ns):
                continue
            try:
                upload(file, self.out / file.relative_to(self.dir).as_posix())
            except Exception as e:  # noqa: BLE001 -- e.g. GCS rate limits or a network blip: try again next time
                print(f"warning: could not upload {file.name} to {self.out} ({type(e).__name__}: {e})",
                      file=sys.stderr)
                return
            self._uploaded[file] = (stat.st_size, stat.st_mtime_ns)

    def progress(self, step: int, loss: float) -> None:
        if self._bar is None:
            return
        self._bar.n = step
        rate = (step - self.start_step) / max(time.perf_counter() - self._t0, 1e-9)
        self._bar.set_postfix(loss=f"{loss:.4f}", steps_per_s=f"{rate:.3f}", refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        if not self.enabled:
            return
        self._bar.close()
        self._jsonl.close()
        if self._tb is not None:
            self._tb.close()
        plot_metrics(self.dir / "metrics.jsonl", self.dir / "metrics.png")
        if self.remote:
            self.sync()
            shutil.rmtree(self.dir, ignore_errors=True)


def drop_replayed_steps(jsonl: Path, start_step: int) -> None:
    """A run resumed from step S replays the steps after S that an interrupted run had logged: their records go,
    so every step appears once in metrics.jsonl and its plot. A truncated last line (a kill mid-write) goes too."""
    if not jsonl.exists():
        return
    kept = []
    for line in jsonl.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("step", 0) <= start_step:
            kept.append(line)
    with atomic_file(jsonl, "w") as f:
        f.write("".join(line + "\n" for line in kept))


# What an evaluation's metrics are logged under: eval (no dev split), dev (the side a run chooses on), test (the one
# evaluation at the end of a run that chose on dev) and test_at_best (the same, on the best-on-dev step)
EVAL_SIDES = ("eval", "dev", "test", "test_at_best")


def eval_side(key: str) -> str | None:
    """The side a metrics.jsonl key belongs to ("dev" for "dev/ndcg@10"), or None for a training field."""
    side = key.split("/", 1)[0]
    return side if "/" in key and side in EVAL_SIDES else None


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_metrics(jsonl: Path, png: Path) -> None:
    """Loss (left) and every eval metric (right) against step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(jsonl)
    train = [r for r in records if "loss" in r]
    evals = [r for r in records if any(eval_side(k) for k in r)]
    fig, (ax_loss, ax_eval) = plt.subplots(1, 2, figsize=(11, 4))
    if train:
        ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train], lw=1)
    ax_loss.set(xlabel="step", ylabel="loss", title="training loss")
    names = sorted({k for r in evals for k in r if eval_side(k) and isinstance(r[k], float)})
    for name in names:
        pts = [(r["step"], r[name]) for r in evals if name in r]
        ax_eval.plot(*zip(*pts), marker="o" if eval_side(name) in ("eval", "dev") else "*", ms=9, label=name)
    if names:
        ax_eval.legend()
    ax_eval.set(xlabel="step", title="evaluation")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
