"""Files that appear whole or not at all, with the user's permissions, and no litter after a crash.

`atomic_write(path, write)` gives the writer a temporary path inside a private folder beside the
target, `.NAME.PID.tmp/`, then renames the finished file over the target. Everything a writer
makes on the way (safetensors, for one, writes its own `.tmpXXXXXX` file beside the path it is
given) stays inside that folder, so `remove_stale_temporaries(folder)` can delete what a killed
process left without touching the temporaries of a live one: the folder names its process.

The finished file gets the mode a plain `open()` would give it (0644 under umask 022), not the
0600 of `tempfile.mkstemp`. A full disk is reported as `DiskFullError` naming the folder.
"""
from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sceneparse.errors import SceneparseError

# ".NAME.PID.tmp" (a folder of atomic_write) or ".NAME.PID.part" (a download of sceneparse.hub)
TEMPORARY = re.compile(r"^\..+\.(\d+)\.(tmp|part)$")
# what safetensors' Rust writer (the `tempfile` crate) names its own temporary file
RUST_TEMPORARY = re.compile(r"^\.tmp[A-Za-z0-9]{6}$")
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(SceneparseError, OSError):
    """The disk (or quota) filled up during a write; nothing partial was kept."""


def file_mode() -> int:
    """The mode `open(path, "w")` gives a new file under the current umask (0644 under 022)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def is_disk_full(exc: BaseException) -> bool:
    """True when `exc` (or what caused it) says the device or the quota is full.

    torch and safetensors wrap the OSError in their own exception types, with the message kept."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in NO_SPACE:
            return True
        text = str(seen)
        if "No space left on device" in text or "StorageFull" in text or "Disk quota exceeded" in text:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def disk_full_error(path: Path) -> DiskFullError:
    return DiskFullError(errno.ENOSPC, f"no space left on device while writing {path.name} in {path.parent}: "
                                       "nothing partial was kept; free some space there and run the command again "
                                       "(training continues with --resume)")


def temporary_folder(path: Path) -> Path:
    """The private folder for the temporaries of writing `path` in this process."""
    return path.parent / f".{path.name}.{os.getpid()}.tmp"


def atomic_write(path: str | Path, write: Callable[[str], Any]) -> None:
    """Call `write(tmp_path)` then rename over `path`: a crash leaves the old file or none, never half.

    `tmp_path` does not exist yet when `write` is called. Raises DiskFullError when the disk fills up.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        folder = temporary_folder(path)
        shutil.rmtree(folder, ignore_errors=True)  # a leftover of an earlier process with the same id
        remove_stale_temporaries(path.parent, prefix=f".{path.name}.")  # of killed earlier writes of this file
        folder.mkdir()
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full_error(path) from None
        raise
    tmp = folder / path.name
    try:
        write(str(tmp))
        os.chmod(tmp, file_mode())  # mkstemp-style writers create 0600 files
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except Exception as exc:
        if is_disk_full(exc):
            raise disk_full_error(path) from None
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(folder: str | Path, rust_temporaries: bool = False, recursive: bool = False,
                             prefix: str = ".") -> int:
    """Delete the temporaries of writers in `folder` whose process has ended; returns how many.

    `rust_temporaries` also deletes safetensors' own `.tmpXXXXXX` files lying directly in the
    folder (left by a save that bypassed `atomic_write`, or by older sceneparse versions); only
    pass it for a folder that one process writes at a time (a work dir). `recursive` looks into
    subfolders too (an output tree of per-image files); `prefix` limits the search to names that
    start with it (the temporaries of one target).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    count = 0
    for entry in list(folder.iterdir()):
        if recursive and entry.is_dir() and not entry.is_symlink() and not TEMPORARY.match(entry.name):
            count += remove_stale_temporaries(entry, rust_temporaries, recursive, prefix)
            continue
        if not entry.name.startswith(prefix):
            continue
        match = TEMPORARY.match(entry.name)
        stale = (match is not None and not _process_alive(int(match.group(1)))) or (
            rust_temporaries and RUST_TEMPORARY.match(entry.name) is not None and entry.is_file())
        if not stale:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        count += 1
    return count


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file, read in 1 MiB chunks: what the caches, manifests and reports verify by."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
