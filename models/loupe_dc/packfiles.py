"""What every tool that writes a Loupe pack shares: file hashes, and publishing a finished folder whole."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_table(folder: Path) -> dict:
    """The manifest's `files`: every file but the manifest, with its sha256 and size."""
    return {f.name: {"sha256": sha256(f), "bytes": f.stat().st_size}
            for f in sorted(folder.iterdir()) if f.is_file() and f.name != "manifest.json"}


def publish(tmp: Path, out: Path, manifest: dict) -> None:
    """Writes the manifest into the finished folder `tmp`, which then replaces `out`: the pack appears whole or
    not at all."""
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


@contextmanager
def staging(out: Path) -> Iterator[Path]:
    """A fresh folder beside `out` to build a pack in; gone afterwards unless `publish` moved it into place."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".pack-", dir=out.parent))
    try:
        yield tmp
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def link_or_copy(src: Path, dst: Path) -> None:
    """`dst` becomes the same bytes as `src`: a hard link (no space, no time), or a copy across file systems."""
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy(src, dst)
