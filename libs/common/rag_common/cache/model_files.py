"""Files derived from model weights at first start (exports, re-encodings), kept for later
starts and replicas: written whole or not at all, in a folder that may be read-only."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


def fingerprint(paths: list[Path]) -> str:
    """A name that changes whenever any of the files does (name, size, modification time);
    files that do not exist are left out."""
    digest = hashlib.sha256()
    for path in paths:
        if path.is_file():
            stat = path.stat()
            digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def output_folder(cached: Path, prefix: str) -> Path:
    """`cached` if this process may write there, else a new temporary folder: a read-only
    cache (an image's, say) still lets the process make what it needs, for itself only."""
    if writable(cached):
        return cached
    log.warning("model cache folder not writable", extra={"path": str(cached)})
    return Path(tempfile.mkdtemp(prefix=prefix))


def writable(folder: Path) -> bool:
    """Whether `folder` exists, or could be made, and may be written to."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


def atomically(target: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file and rename: a replica never loads half a file."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
