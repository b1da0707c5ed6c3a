"""Published checkpoints: download once, verify, convert, cache.

A preset whose `published.weights_url` is set gets its weights without a `--weights` argument:

1. the file is downloaded into the cache directory (`~/.cache/sceneparse`, or `$SCENEPARSE_CACHE`)
   under a temporary name, with a progress bar;
2. its length is checked against Content-Length and its SHA-256 against the preset's known prefix
   (mmsegmentation file names carry the first 8 hex digits);
3. a foreign checkpoint (mmsegmentation, sssegmentation, ...) goes through the converters, and the
   converted safetensors file is what is cached, under `weights/`; the raw download is removed.

Every step either completes or leaves nothing behind: a temporary file is renamed into place only
after it is verified, and a failed attempt starts again from zero (nothing is resumed silently).
Transient failures (a dropped connection, a truncated transfer, a server error) are retried a few
times with growing pauses; a wrong checksum or an HTTP 404 is not.
"""
from __future__ import annotations

import hashlib
import http.client
import logging
import os
import socket
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import torch
from tqdm import tqdm

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
    """The last path component of a URL (without query), e.g. 'pspnet_..._2966598c.pth'."""
    name = Path(urllib.parse.urlparse(url).path).name
    if not name:
        raise DownloadError(f"{url}: the URL names no file")
    return name


# ---------------------------------------------------------------- one verified download


class _Transient(Exception):
    """A failure worth another try (connection dropped, truncated, server busy)."""


class _Unreachable(_Transient):
    """The host could not be reached at all (no route, refused, timed out)."""


def _download_once(url: str, tmp: Path, timeout: float, progress: bool) -> tuple[int, str]:
    """Stream `url` into `tmp`; returns (bytes, sha256 hex). Raises _Transient for retryable failures."""
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
    return received, digest.hexdigest()


def fetch(
    url: str,
    sha256_prefix: str = "",
    dest: str | Path | None = None,
    retries: int = 3,
    backoff: float = 1.0,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """The local copy of `url` at `dest` (default: cache_dir()/downloads/<file name>), downloading it if absent.

    The file appears only once complete and verified (length, and SHA-256 when `sha256_prefix` is
    given). Transient failures are tried again up to `retries` times, pausing `backoff`, 2 x `backoff`, ...
    Raises DownloadError with what went wrong; offline it says "no network: pass --weights PATH".
    """
    dest = Path(dest) if dest is not None else cache_dir() / "downloads" / url_filename(url)
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    host = urllib.parse.urlparse(url).netloc
    failures: list[str] = []
    unreachable = True
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
            log.warning("retrying %s (attempt %d of %d): %s", url, attempt + 1, retries + 1, failures[-1])
        fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        os.close(fd)
        tmp = Path(name)
        try:
            size, sha = _download_once(url, tmp, timeout, progress)
            if sha256_prefix and not sha.startswith(sha256_prefix.lower()):
                raise DownloadError(
                    f"{url}: checksum mismatch: SHA-256 {sha[:16]}... does not start with the expected "
                    f"{sha256_prefix}; the file was discarded. The server may hold a different file; "
                    "download it yourself and pass --weights PATH"
                )
            os.replace(tmp, dest)
            log.info("downloaded %s (%.1f MB) to %s", url, size / 1e6, dest)
            return dest
        except _Unreachable as exc:
            failures.append(str(exc))
            if isinstance(exc.__cause__, urllib.error.URLError) and isinstance(exc.__cause__.reason, socket.gaierror):
                break  # the name does not resolve: no use waiting
        except _Transient as exc:
            failures.append(str(exc))
            unreachable = False
        finally:
            tmp.unlink(missing_ok=True)
    if unreachable:
        raise DownloadError(f"no network: pass --weights PATH (could not reach {host}: {failures[-1]})")
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
        path.unlink(missing_ok=True)
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
    converted = cache_dir() / "weights" / (Path(filename).stem + ".safetensors")
    if converted.is_file():
        return converted
    if filename.endswith(".safetensors") and fmt in ("", "sceneparse"):
        path = fetch(url, sha256_prefix, dest=converted, retries=retries, backoff=backoff, progress=progress)
        _check_safetensors(path, url)
        return path
    raw = fetch(url, sha256_prefix, retries=retries, backoff=backoff, progress=progress)
    fmt = fmt or _detect_format(raw)
    state = _convert(fmt, raw, preset)
    metadata = {"preset": preset.name, "source_url": url, "source_format": fmt}
    save_weights(state, converted, metadata=metadata)
    raw.unlink(missing_ok=True)
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
