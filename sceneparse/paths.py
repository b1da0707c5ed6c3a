"""Keys that become file names stay inside their folder.

A split list line, a sample key, an archive member or a URL's last segment is text from outside;
joined to a folder it could name a file anywhere (`../../labels/x`, `/etc/x`). Every such key
goes through `inside(folder, key)` before it is read or written, and a list file's entries
through `read_list_entries`, which names the list file and line of an entry that would escape.
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath

from sceneparse.errors import DataError


def escape_reason(key: str) -> str:
    """Why `key` would leave the folder it is joined to ('' when it stays inside)."""
    if not key:
        return "it is empty"
    if "\0" in key:
        return "it holds a NUL character"
    parts = PurePosixPath(key.replace("\\", "/")).parts
    if key.startswith(("/", "\\")) or (len(key) > 1 and key[1] == ":"):
        return "it is an absolute path"
    if ".." in parts:
        return "it climbs out with '..'"
    return ""


def inside(folder: str | Path, key: str, where: str = "") -> Path:
    """`folder / key`, or DataError when `key` would leave `folder` (`where` says where the key came from)."""
    reason = escape_reason(key)
    if reason:
        origin = f"{where}: " if where else ""
        raise DataError(f"{origin}{key!r} would name a file outside {folder} ({reason}); "
                        "keys are names relative to that folder, e.g. 2007_000032")
    return Path(folder) / key


def read_list_entries(list_file: str | Path) -> list[str]:
    """The non-empty, stripped lines of a split list; DataError naming the file and line of an entry
    that is not a plain relative name (absolute, or climbing out with '..')."""
    path = Path(list_file)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: list file is missing") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start}); a split list "
                        "holds one image name a line") from None
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.strip()
        if not entry:
            continue
        reason = escape_reason(entry)
        if reason:
            raise DataError(f"{path}, line {number}: entry {entry!r} is refused ({reason}); a split list names "
                            "images relative to the dataset's image folder, e.g. 2007_000032")
        entries.append(entry)
    return entries
