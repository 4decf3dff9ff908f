"""Output files: checked before any work starts, written under a temporary name, renamed when complete.

A narration can take hours; finding out at the end that the output path is a folder, unwritable or of
an unknown format loses all of it. ``check_output`` runs before a model is loaded; ``atomic_output``
gives the writer a temporary path beside the target (same folder, so the rename is atomic) and
renames it only when the writer returned, so nothing that looks finished is ever half-written;
``write_json`` does the same for the small JSON records Vesper keeps (calibration, plan history).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from inference.errors import BadInputError


def check_output(path: Path, formats: Iterable[str], force: bool = True) -> Path:
    """The resolved target, or ``BadInputError`` saying what is wrong with it.

    ``formats`` are the extensions the caller can write (without dots, lower case). ``force`` False
    refuses an existing file.
    """
    allowed = tuple(formats)
    target = Path(path).expanduser().resolve()
    suffix = target.suffix.lower().lstrip(".")
    if target.is_dir():
        raise BadInputError(f"Output {path} is a folder: give a file name such as {path}/narration.{allowed[0]}.")
    if suffix not in allowed:
        known = ", ".join(f".{f}" for f in allowed)
        raise BadInputError(f"Output {path} has {'no extension' if not suffix else f'the extension .{suffix}'}; "
                            f"the formats Vesper writes here are {known}.")
    parent = target.parent
    if not parent.exists():
        raise BadInputError(f"Cannot write {path}: the folder {parent} does not exist.")
    if not parent.is_dir():
        raise BadInputError(f"Cannot write {path}: {parent} is a file, not a folder.")
    try:  # the real test (read-only mounts, ACLs, root): an unnamed file that vanishes when closed
        tempfile.TemporaryFile(dir=parent).close()
    except OSError as exc:
        raise BadInputError(f"Cannot write {path}: the folder {parent} is not writable ({exc.strerror}).") from None
    if target.exists() and not force:
        raise BadInputError(f"Output {path} already exists: pass --force to replace it.")
    return target


@contextmanager
def atomic_output(target: Path) -> Iterator[Path]:
    """A temporary path beside ``target``; renamed to ``target`` if the block ends without an exception."""
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        yield partial
        os.chmod(partial, 0o666 & ~_umask())  # what a plainly created file would get, not mkstemp's 0600
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def write_json(target: Path, data: object) -> Path:
    """Write ``data`` as JSON atomically (calibration records, the plan history): never half a record."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(target) as partial:
        partial.write_text(json.dumps(data, indent=2, sort_keys=True))
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
