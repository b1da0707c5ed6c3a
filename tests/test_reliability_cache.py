"""The download cache: keyed by URL, verified at every use, complete or absent (issue 14, points 2, 3, 7, 8)."""
from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sceneparse import hub
from sceneparse.hub import DownloadError, fetch, fetch_weights, url_key
from sceneparse.weights import load_weights_file
from tests import test_hub
from tests.test_eval_cli import tiny_preset, tiny_weights
from tests.test_hub import Server, leftovers, mmseg_checkpoint, sha, stamp

server = test_hub.server  # the local HTTP server, and the cache in tmp_path (fixtures)
cache = test_hub.cache


def dead_pid() -> int:
    """The id of a process that has ended."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ---------------------------------------------------------------- point 2: keyed by URL, checked at every use


def test_two_urls_with_the_same_file_name_never_share_an_entry(server: Server) -> None:
    first = server.add("a/model.bin", b"first file" * 1000)
    second = server.add("b/model.bin", b"second file" * 1000)
    path_a = fetch(first, progress=False)
    path_b = fetch(second, progress=False)
    assert path_a != path_b and path_a.name == path_b.name == "model.bin"  # the readable name is kept
    assert path_a.read_bytes() == b"first file" * 1000 and path_b.read_bytes() == b"second file" * 1000
    assert fetch(first, progress=False).read_bytes() == b"first file" * 1000


def test_a_wrong_file_placed_in_the_cache_is_not_used(server: Server, cache: Path, tmp_path: Path) -> None:
    published = tiny_weights(tmp_path / "published.safetensors", seed=0).read_bytes()
    other = tiny_weights(tmp_path / "other.safetensors", seed=1).read_bytes()
    url = server.add("published.safetensors", published)
    path = fetch_weights(url, tiny_preset(), sha256_prefix=sha(published)[:8], progress=False)
    path.write_bytes(other)  # a valid weights file, but not the published one
    again = fetch_weights(url, tiny_preset(), sha256_prefix=sha(published)[:8], progress=False)
    assert again.read_bytes() == published
    assert server.routes["/published.safetensors"].hits == 2


def test_converted_weights_are_checked_at_every_use(server: Server, cache: Path, tmp_path: Path) -> None:
    state, _ = load_weights_file(tiny_weights(tmp_path / "ours.safetensors"))
    body = mmseg_checkpoint(state)
    url = server.add("pspnet_tiny_20240101-0badc0de.pth", body)
    path = fetch_weights(url, tiny_preset(), fmt="mmseg", sha256_prefix=sha(body)[:8], progress=False)
    assert fetch_weights(url, tiny_preset(), fmt="mmseg", sha256_prefix=sha(body)[:8], progress=False) == path
    assert server.routes["/pspnet_tiny_20240101-0badc0de.pth"].hits == 1
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF  # one flipped bit in a tensor: still a readable file
    path.write_bytes(bytes(data))
    fetch_weights(url, tiny_preset(), fmt="mmseg", sha256_prefix=sha(body)[:8], progress=False)
    assert server.routes["/pspnet_tiny_20240101-0badc0de.pth"].hits == 2
    converted, _ = load_weights_file(path)
    assert all(bool((converted[k] == state[k]).all()) for k in state)


# ---------------------------------------------------------------- point 3: verified, atomic, retried, nothing left


def test_a_response_cut_short_without_content_length_is_retried(server: Server, cache: Path) -> None:
    body = bytes(range(256)) * 2000
    url = server.add("nolength.bin", body, truncate_times=1, announce_length=False)
    path = fetch(url, sha256_prefix=sha(body)[:8], progress=False, backoff=0)
    assert path.read_bytes() == body
    assert server.routes["/nolength.bin"].hits == 2


def test_a_cut_checkpoint_without_length_or_checksum_is_fetched_again_next_run(
        server: Server, cache: Path, tmp_path: Path) -> None:
    state, _ = load_weights_file(tiny_weights(tmp_path / "ours.safetensors"))
    url = server.add("cut.pth", mmseg_checkpoint(state), truncate_times=1, announce_length=False)
    with pytest.raises(DownloadError, match="could not be converted"):
        fetch_weights(url, tiny_preset(), fmt="mmseg", progress=False)
    assert leftovers(cache) == []  # the cut file did not stay in the cache
    path = fetch_weights(url, tiny_preset(), fmt="mmseg", progress=False)  # the next run
    assert load_weights_file(path)[0].keys() == state.keys()


def test_a_partial_file_in_the_cache_is_downloaded_again(server: Server) -> None:
    body = b"z" * 100_000
    url = server.add("partial.bin", body)
    path = fetch(url, progress=False)
    path.write_bytes(body[:1000])  # e.g. copied in by hand, or cut by a full disk outside sceneparse
    assert fetch(url, progress=False).read_bytes() == body
    assert server.routes["/partial.bin"].hits == 2


def test_part_files_of_a_killed_download_are_removed_on_the_next_start(server: Server, cache: Path) -> None:
    url = server.add("big.bin", b"b" * 50_000)
    folder = cache / "downloads" / url_key(url)
    folder.mkdir(parents=True)
    stale = folder / f".big.bin.{dead_pid()}.part"
    stale.write_bytes(b"half")
    live = folder / f".big.bin.{os.getppid()}.part"  # a download still running in another process
    live.write_bytes(b"half")
    path = fetch(url, progress=False)
    assert not stale.exists() and live.exists()
    live.unlink()
    assert sorted(leftovers(cache)) == [path, stamp(path)]


# ---------------------------------------------------------------- point 7: a cache that cannot be written


def test_a_cache_that_cannot_be_written_is_named_with_the_variable(
        server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv("SCENEPARSE_CACHE", str(blocker / "cache"))
    url = server.add("w.bin", b"w" * 100)
    with pytest.raises(DownloadError, match=r"a_file/cache/downloads/.*cannot be written.*SCENEPARSE_CACHE"):
        fetch(url, progress=False)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_cache_is_named_with_the_variable(server: Server, cache: Path) -> None:
    cache.mkdir()
    cache.chmod(0o555)
    try:
        with pytest.raises(DownloadError, match="cannot be written.*SCENEPARSE_CACHE"):
            fetch(server.add("w.bin", b"w" * 100), progress=False)
    finally:
        cache.chmod(0o755)


# ---------------------------------------------------------------- point 8: the user's umask


def test_downloads_get_the_umask_mode(server: Server) -> None:
    old = os.umask(0o022)
    try:
        path = fetch(server.add("m.bin", b"m" * 100), progress=False)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_a_full_disk_during_a_download_is_named_and_leaves_nothing(
        server: Server, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def filling(url: str, tmp: Path, timeout: float, progress: bool) -> tuple[int, str, bool]:
        tmp.write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(hub, "_download_once", filling)
    url = server.add("full.bin", b"f" * 100)
    with pytest.raises(DownloadError, match=r"no space left on device in .*downloads.*SCENEPARSE_CACHE"):
        fetch(url, progress=False)
    assert leftovers(cache) == []
