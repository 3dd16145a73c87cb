"""Writing files and folders safely (all or nothing) and showing what is inside a folder."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to; it is renamed to ``path`` only if the block finishes.

    An exception or an interrupt removes it, so ``path`` is never half-written; the name is this process's own
    (``.<name>.<pid>-<random>.tmp``), so two processes writing the same file never write into each other's. The
    name does not end like ``path``: tell a writer that guesses the format from it (``savefig``, PIL) the format.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file beside it, so a crash never leaves half a file."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextmanager
def atomic_folder(folder: str | Path, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``folder``; rename it to ``folder`` only if the block finishes.

    An exception or an interrupt inside the block removes the temporary folder, so ``folder`` is never
    half-written. With ``replace=True`` an existing ``folder`` is swapped out (kept until the new one is in
    place); otherwise an existing folder written meanwhile by another process is kept.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if replace and folder.exists():
        old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(folder, old)
    try:
        os.replace(tmp, folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            os.replace(old, folder)
        if not folder.is_dir():  # fine if another process finished the same folder first
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def folder_tree(folder: str | Path) -> str:
    """The files under ``folder`` as an indented tree with sizes, e.g. ``unet/  config.json  1.2 kB``."""
    folder = Path(folder)
    lines = [f"{folder.name}/"]
    for path in sorted(folder.rglob("*")):
        depth = len(path.relative_to(folder).parts)
        indent = "    " * depth
        if path.is_dir():
            lines.append(f"{indent}{path.name}/")
        else:
            lines.append(f"{indent}{path.name:<{44 - len(indent)}s} {human_size(path.stat().st_size):>9s}")
    return "\n".join(lines)


def human_size(n_bytes: int) -> str:
    """A byte count in B / kB / MB / GB (powers of 1000, like the Hub shows them)."""
    size = float(n_bytes)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def save_pipeline(pipeline, folder: str | Path) -> Path:
    """``pipeline.save_pretrained`` (safetensors) into a temporary folder renamed to ``folder``: never half-written.

    An existing ``folder`` is replaced only once the new save is complete.
    """
    with atomic_folder(folder, replace=True) as tmp:
        pipeline.save_pretrained(tmp, safe_serialization=True)
        forget_source(tmp)
    return Path(folder)


def forget_source(folder: str | Path) -> None:
    """Drop ``_name_or_path`` from a saved pipeline's ``model_index.json`` and components' ``config.json``.

    diffusers records there the folder a pipeline was loaded from (a local path, with the user's name in it);
    nothing reads it back, and it should not be uploaded to the Hub.
    """
    for config in [Path(folder) / "model_index.json", *Path(folder).glob("*/config.json")]:
        if config.is_file() and "_name_or_path" in (data := json.loads(config.read_text(encoding="utf-8"))):
            del data["_name_or_path"]
            write_text_atomic(config, json.dumps(data, indent=2, sort_keys=True) + "\n")
