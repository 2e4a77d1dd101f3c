"""One error type for everything a user can get wrong, so the CLI can print it as a single line.

The message always names where the problem is (file, and line or field when known): a user with a 2 GB jsonl
needs "train.jsonl:184223: field 'pos' is empty", not a traceback from inside tf.data.
"""

from __future__ import annotations

import os


class InputError(ValueError):
    """Bad user input: a file, a line in it, a config field. Raised before any work is lost."""

    def __init__(self, message: str, path: str | os.PathLike | None = None, line: int | None = None,
                 field: str | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        self.field = field
        where = ""
        if self.path is not None:
            where = self.path if line is None else f"{self.path}:{line}"
        if field is not None:
            where = f"{where} [{field}]" if where else f"[{field}]"
        super().__init__(f"{where}: {message}" if where else message)


class TrainingDiverged(RuntimeError):
    """A run stopped because its steps kept producing non-finite values; what was saved before is intact."""


def require_one_batch(count: int, batch_size: int, what: str, source) -> None:
    """Every task's first input check: at least one global batch of examples (drop-remainder epochs)."""
    if count < batch_size:
        raise InputError(f"{count} {what} are fewer than one batch of {batch_size}", source, field="batch_size")
