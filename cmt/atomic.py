"""Write files and folders so that a reader finds the old version or the new one whole, never half of one.

Everything is first written into a hidden scratch file or folder beside its place (``.<name>.tmp-<12 hex>``,
on the same file system, so a rename can move it in) and then renamed into place. A crash or a kill mid-write
leaves the old version untouched and at most a hidden scratch entry beside it (`cmt.checkpointing.prune`
sweeps the checkpoints' ones). Used by the checkpoints (`cmt.checkpointing`), saved models (`cmt.models`),
converted GGUF folders (`cmt.gguf`), the SFT model store (`cmt.stages.reuse`) and written data sets
(`cmt.results.store`).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO


def scratch_name(path: Path) -> Path:
    """A fresh hidden name beside ``path`` (``.<name>.tmp-<12 hex>``) for something that is renamed into or
    out of ``path``'s place."""
    return path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:12]}"


@contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[TextIO]:
    """Open a text file whose content replaces ``path`` when the ``with`` block ends without an exception.

    The text goes to a scratch file beside ``path`` (its folders are created), is flushed to disk and renamed
    over ``path``; when the block raises, the scratch file is deleted and ``path`` keeps its old content.

    Args:
        path: The file to (re)write.

    Yields:
        The scratch file, open for writing text.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = scratch_name(path)
    try:
        with tmp.open("w") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def scratch_folder(target: str | os.PathLike) -> Iterator[Path]:
    """A new empty scratch folder beside ``target`` (whose parent must exist) to build it in, deleted with
    whatever is left in it when the ``with`` block ends: move the result out with `publish_new` or
    `replace_folder` inside the block. Made with the usual permissions (``tempfile.mkdtemp`` would make it
    private, and the folders it becomes are shared)."""
    scratch = scratch_name(Path(target))
    scratch.mkdir()
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def publish_new(folder: str | os.PathLike, target: str | os.PathLike) -> bool:
    """Rename ``folder`` to ``target`` unless something else already holds that name.

    For a folder whose name says what is in it (a key), where a second writer's copy is the same thing as the
    first's: the first one to publish wins and later ones keep theirs to be discarded.

    Returns:
        True when ``folder`` is now ``target``; False when ``target`` already existed (``folder`` stays).

    Raises:
        OSError: The rename failed for another reason.
    """
    target = Path(target)
    try:
        os.rename(folder, target)
    except OSError:
        if target.exists():
            return False
        raise
    return True


def replace_folder(folder: str | os.PathLike, target: str | os.PathLike) -> None:
    """Make ``folder`` become ``target``, replacing whatever folder ``target`` was.

    The old folder is first renamed aside, so a reader finds it whole, or (for the moment between two renames)
    nothing, or the new one whole, never one half deleted; it is deleted once the new one is in place. When
    the second rename fails, the old folder is put back and the error raised.
    """
    target = Path(target)
    aside = scratch_name(target)
    had_old = True
    try:
        os.rename(target, aside)
    except FileNotFoundError:
        had_old = False
    try:
        os.rename(folder, target)
    except OSError:
        if had_old:
            os.rename(aside, target)
        raise
    if had_old:
        shutil.rmtree(aside, ignore_errors=True)
