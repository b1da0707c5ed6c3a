"""Published checkpoints: download once, verify, convert, cache.

A preset whose `published.weights_url` is set gets its weights without a `--weights` argument:

1. the file is downloaded into the cache directory (`~/.cache/sceneparse`, or `$SCENEPARSE_CACHE`)
   under a temporary name (`.NAME.PID.part`), with a progress bar;
2. its length is checked against Content-Length and its SHA-256 against the preset's known prefix
   (mmsegmentation file names carry the first 8 hex digits);
3. a foreign checkpoint (mmsegmentation, sssegmentation, ...) goes through the converters, and the
   converted safetensors file is what is cached, under `weights/`; the raw download is removed.

The cache is keyed by the URL: `downloads/<KEY>/<file name>` and `weights/<KEY>/<stem>.safetensors`,
KEY being the first 16 hex digits of the URL's SHA-256, so two URLs never share an entry and the
file keeps its readable name. Beside each cached file, `<file>.sha256` (JSON) records the URL,
the file's SHA-256 and the SHA-256 of the download it came from. A cached file is used only if,
at this use, its SHA-256 equals the recorded one and the download's matches the preset's prefix;
anything else (a partial file, a file placed by hand, a stamp of another URL) is deleted and
downloaded again.

Every step either completes or leaves nothing behind: a temporary file is renamed into place only
after it is verified, and a failed attempt starts again from zero (nothing is resumed silently);
the `.part` files of a killed process are deleted by the next one. Transient failures (a dropped
connection, a truncated transfer, a server error) are retried a few times with growing pauses; a
wrong checksum or an HTTP 404 is not, except when the server sent no Content-Length, where a wrong
checksum may be a cut transfer.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import torch
from tqdm import tqdm

from sceneparse.atomic import atomic_write, file_mode, file_sha256, is_disk_full, remove_stale_temporaries
from sceneparse.config.schema import Preset
from sceneparse.errors import CheckpointError, SceneparseError

log = logging.getLogger(__name__)

CACHE_ENV = "SCENEPARSE_CACHE"
CHUNK = 1 << 20
USER_AGENT = "sceneparse (+https://github.com/sceneparse)"


class DownloadError(SceneparseError):
    """A download that failed or did not verify; nothing was left in the cache."""


def cache_dir() -> Path:
    """Where downloads and converted weights are kept: $SCENEPARSE_CACHE, else ~/.cache/sceneparse."""
    configured = os.environ.get(CACHE_ENV, "").strip()
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "sceneparse"


def is_url(text: str | Path) -> bool:
    return isinstance(text, str) and text.split("://", 1)[0].lower() in ("http", "https")


def url_filename(url: str) -> str:
    """The last path component of a URL (without query), e.g. 'pspnet_..._2966598c.pth'.

    It becomes a file name in the cache, so anything that is not a plain name is refused."""
    path = urllib.parse.unquote(urllib.parse.urlparse(url).path)
    segments = path.split("/")
    name = segments[-1]
    if ".." in segments[:-1]:
        raise DownloadError(f"{url}: the URL's path climbs with '..'; give the file's plain URL")
    if not name or name in (".", "..") or "\\" in name or "\0" in name:
        raise DownloadError(f"{url}: the URL does not end in a file name (it ends in {name!r}); "
                            "give the URL of the file itself")
    return name


def url_key(url: str) -> str:
    """16 hex digits that name `url`'s cache entry: the same file name from two URLs never collides."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


def _writable_folder(folder: Path) -> Path:
    """`folder`, created if need be; DownloadError naming it (and $SCENEPARSE_CACHE) if it cannot be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test.{os.getpid()}.tmp"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise DownloadError(f"{folder}: the download cache cannot be written ({reason}); make it writable, or "
                            f"set {CACHE_ENV} to a writable folder") from None
    return folder


# ---------------------------------------------------------------- stamps: what a cached file was verified as



def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _write_stamp(path: Path, url: str, sha256: str, source_sha256: str) -> None:
    text = json.dumps({"url": url, "sha256": sha256, "source_sha256": source_sha256}) + "\n"
    atomic_write(_stamp_path(path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _discard(path: Path) -> None:
    path.unlink(missing_ok=True)
    _stamp_path(path).unlink(missing_ok=True)


def _verified(path: Path, url: str, sha256_prefix: str) -> bool:
    """True when the cached `path` is, by its SHA-256 now, the file verified for `url` when it was cached."""
    if not path.is_file():
        return False
    try:
        stamp = json.loads(_stamp_path(path).read_text(encoding="utf-8"))
        ok = (isinstance(stamp, dict) and stamp.get("url") == url
              and str(stamp.get("source_sha256", "")).startswith(sha256_prefix.lower())
              and file_sha256(path) == stamp.get("sha256"))
    except (OSError, ValueError):
        ok = False
    if not ok:
        log.warning("%s does not match what was verified for %s; downloading it again", path, url)
    return ok


# ---------------------------------------------------------------- one verified download


class _Transient(Exception):
    """A failure worth another try (connection dropped, truncated, server busy)."""


class _Unreachable(_Transient):
    """The host could not be reached at all (no route, refused, timed out)."""


def _download_once(url: str, tmp: Path, timeout: float, progress: bool) -> tuple[int, str, bool]:
    """Stream `url` into `tmp`; returns (bytes, sha256 hex, whether the length was announced).
    Raises _Transient for retryable failures."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    digest = hashlib.sha256()
    received = 0
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, open(tmp, "wb") as out:
            length_header = response.headers.get("Content-Length")
            expected = int(length_header) if length_header and length_header.isdigit() else None
            with tqdm(total=expected, unit="B", unit_scale=True, unit_divisor=1024, desc=url_filename(url),
                      disable=not progress, leave=False) as bar:
                while True:
                    chunk = response.read(CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
    except urllib.error.HTTPError as exc:
        if exc.code >= 500 or exc.code in (408, 429):
            raise _Transient(f"HTTP {exc.code} {exc.reason}") from exc
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise _Unreachable(str(exc.reason)) from exc
    except http.client.IncompleteRead as exc:
        raise _Transient(f"transfer truncated after {received + len(exc.partial)} bytes") from exc
    except (ConnectionError, TimeoutError, http.client.HTTPException) as exc:
        raise _Transient(f"{type(exc).__name__}: {exc}") from exc
    if expected is not None and received != expected:
        raise _Transient(f"transfer truncated: got {received} of {expected} bytes")
    return received, digest.hexdigest(), expected is not None


def fetch(
    url: str,
    sha256_prefix: str = "",
    dest: str | Path | None = None,
    retries: int = 3,
    backoff: float = 1.0,
    timeout: float = 60.0,
    progress: bool = True,
    manual: str = "pass --weights PATH",
) -> Path:
    """The local copy of `url` at `dest` (default: cache_dir()/downloads/<url_key>/<file name>),
    downloading it unless a copy verified for this URL (and `sha256_prefix`) is there.

    The file appears only once complete and verified (length, and SHA-256 when `sha256_prefix` is
    given); `<dest>.sha256` records what it was verified as, and is checked again at every call.
    Transient failures are tried again up to `retries` times, pausing `backoff`, 2 x `backoff`, ...
    Raises DownloadError with what went wrong; offline it says "no network: " + `manual`, the caller's
    advice for a file fetched by hand.
    """
    name = url_filename(url)
    dest = Path(dest) if dest is not None else cache_dir() / "downloads" / url_key(url) / name
    _writable_folder(dest.parent)
    removed = remove_stale_temporaries(dest.parent)
    if removed:
        log.info("removed %d partial download(s) of an interrupted run in %s", removed, dest.parent)
    if _verified(dest, url, sha256_prefix):
        return dest
    _discard(dest)
    host = urllib.parse.urlparse(url).netloc
    failures: list[str] = []
    unreachable = True
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
            log.warning("retrying %s (attempt %d of %d): %s", url, attempt + 1, retries + 1, failures[-1])
        tmp = dest.parent / f".{dest.name}.{os.getpid()}.part"
        try:
            size, sha, announced = _download_once(url, tmp, timeout, progress)
            if sha256_prefix and not sha.startswith(sha256_prefix.lower()):
                message = (f"{url}: checksum mismatch: SHA-256 {sha[:16]}... does not start with the expected "
                           f"{sha256_prefix}; the file was discarded")
                if not announced:  # no Content-Length: a cut connection looks like a complete file
                    raise _Transient(f"{message} (the server sent no length: maybe cut short)")
                raise DownloadError(f"{message}. The server may hold a different file; "
                                    f"download it yourself and {manual}")
            os.chmod(tmp, file_mode())
            os.replace(tmp, dest)
            _write_stamp(dest, url, sha, sha)
            log.info("downloaded %s (%.1f MB) to %s", url, size / 1e6, dest)
            return dest
        except _Unreachable as exc:
            failures.append(str(exc))
            if isinstance(exc.__cause__, urllib.error.URLError) and isinstance(exc.__cause__.reason, socket.gaierror):
                break  # the name does not resolve: no use waiting
        except _Transient as exc:
            failures.append(str(exc))
            unreachable = False
        except OSError as exc:
            if is_disk_full(exc):
                raise DownloadError(f"{url}: no space left on device in {dest.parent} (the download cache; set "
                                    f"{CACHE_ENV} to move it); nothing partial was kept") from None
            raise
        finally:
            tmp.unlink(missing_ok=True)
    if unreachable:
        raise DownloadError(f"no network: {manual} (could not reach {host}: {failures[-1]})")
    raise DownloadError(f"{url}: download failed after {len(failures)} attempts ({failures[-1]}); nothing was cached")


# ---------------------------------------------------------------- weights for a preset


def _convert(fmt: str, src: Path, preset: Preset) -> dict[str, torch.Tensor]:
    """A foreign checkpoint's state dict renamed for `preset`'s model, checked against it strictly."""
    from sceneparse.convert import FORMATS, convert_checkpoint

    if fmt not in FORMATS:
        raise CheckpointError(f"{src}: no converter for weights format {fmt!r} (known: {', '.join(FORMATS)}); "
                              "convert it yourself and pass --weights PATH")
    return convert_checkpoint(fmt, src, preset)


def _detect_format(src: Path) -> str:
    """The format of a downloaded file that no preset describes, from its key names."""
    from sceneparse.convert.common import read_torch_checkpoint
    from sceneparse.weights import detect_format

    return detect_format(read_torch_checkpoint(src))


def _check_safetensors(path: Path, url: str) -> None:
    """A downloaded .safetensors must open (a server may answer with an HTML page); else it leaves the cache."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            handle.keys()
    except Exception as exc:  # safetensors raises its own error types for a bad header
        _discard(path)
        raise DownloadError(f"{url}: the downloaded file is not a safetensors file ({exc}); nothing was cached. "
                            "Download it yourself and pass --weights PATH") from None


def fetch_weights(url: str, preset: Preset, fmt: str = "", sha256_prefix: str = "", progress: bool = True,
                  retries: int = 3, backoff: float = 1.0) -> Path:
    """sceneparse safetensors weights for `preset` from `url`: cached, or downloaded and converted.

    `fmt` is the file's format ("mmseg", "sssegmentation", ...; empty: safetensors files are taken
    as they are, others are recognised by their keys).
    """
    from sceneparse.weights import save_weights

    filename = url_filename(url)
    converted = cache_dir() / "weights" / url_key(url) / (Path(filename).stem + ".safetensors")
    if filename.endswith(".safetensors") and fmt in ("", "sceneparse"):
        path = fetch(url, sha256_prefix, dest=converted, retries=retries, backoff=backoff, progress=progress)
        _check_safetensors(path, url)
        return path
    _writable_folder(converted.parent)
    remove_stale_temporaries(converted.parent)
    if _verified(converted, url, sha256_prefix):
        return converted
    _discard(converted)
    raw = fetch(url, sha256_prefix, retries=retries, backoff=backoff, progress=progress)
    try:
        fmt = fmt or _detect_format(raw)
        state = _convert(fmt, raw, preset)
        source_sha = json.loads(_stamp_path(raw).read_text(encoding="utf-8"))["sha256"]
    except CheckpointError as exc:
        _discard(raw)  # a cut or foreign file: the next run downloads it again
        raise DownloadError(f"{url}: the downloaded file could not be converted ({exc}); it was removed from "
                            "the cache. If it keeps failing, download it yourself and pass --weights PATH") from None
    metadata = {"preset": preset.name, "source_url": url, "source_format": fmt}
    save_weights(state, converted, metadata=metadata)
    _write_stamp(converted, url, file_sha256(converted), source_sha)
    _discard(raw)
    log.info("converted %s (%s) to %s", filename, fmt, converted)
    return converted


def pretrained_weights(preset: Preset, progress: bool = True) -> Path:
    """The cached safetensors file of the preset's published checkpoint (downloaded on first use)."""
    url = preset.published.weights_url
    if not url:
        raise CheckpointError(f"preset {preset.name or '(unnamed)'} has no published checkpoint; pass --weights PATH")
    return fetch_weights(url, preset, preset.published.weights_format, preset.published.sha256_prefix, progress)


def resolve_weights(preset: Preset, weights: str | Path | None, progress: bool = True) -> Path:
    """A local weights file for `preset`: `weights` as a path, a URL (fetched and converted), or,
    when None, the preset's published checkpoint."""
    if weights is None or str(weights) == "":
        return pretrained_weights(preset, progress)
    if is_url(str(weights)):
        return fetch_weights(str(weights), preset, progress=progress)
    path = Path(weights).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{path}: no such weights file")
    return path
