"""Downloads against a local HTTP server: verified, atomic, retried, converted on the way in."""
from __future__ import annotations

import contextlib
import hashlib
import io
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from sceneparse.api import build_model
from sceneparse.hub import DownloadError, cache_dir, fetch, fetch_weights, resolve_weights, url_key
from sceneparse.segmenter import Segmenter
from sceneparse.weights import load_weights_file
from tests.test_eval_cli import tiny_preset, tiny_weights


@dataclass
class Route:
    body: bytes
    truncate_times: int = 0  # the first N answers stop half-way (Content-Length says more)
    status: int = 200
    hits: int = 0
    announce_length: bool = True  # False: no Content-Length, the body ends when the connection closes


@dataclass
class Server:
    base: str
    routes: dict[str, Route] = field(default_factory=dict)

    def add(self, name: str, body: bytes, **behaviour: int) -> str:
        self.routes["/" + name] = Route(body, **behaviour)
        return f"{self.base}/{name}"


@pytest.fixture()
def server() -> Iterator[Server]:
    routes: dict[str, Route] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            route = routes.get(self.path)
            if route is None or route.status != 200:
                if route is not None:
                    route.hits += 1
                self.send_error(route.status if route else 404)
                return
            route.hits += 1
            self.send_response(200)
            if route.announce_length:
                self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            if route.hits <= route.truncate_times:
                self.wfile.write(route.body[: len(route.body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(route.body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{httpd.server_address[1]}", routes)
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("SCENEPARSE_CACHE", str(root))
    return root


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def stamp(path: Path) -> Path:
    """The record of what a cached file was verified as."""
    return path.with_name(path.name + ".sha256")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_cache_dir_follows_the_environment(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cache_dir() == cache
    monkeypatch.delenv("SCENEPARSE_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "sceneparse"


def test_download_verifies_and_is_cached(server: Server, cache: Path) -> None:
    body = bytes(range(256)) * 4000
    url = server.add("model_1234abcd.bin", body)
    path = fetch(url, sha256_prefix=sha(body)[:8], progress=False)
    assert path.read_bytes() == body and path.parent == cache / "downloads" / url_key(url)
    assert fetch(url, sha256_prefix=sha(body)[:8], progress=False) == path
    assert server.routes["/model_1234abcd.bin"].hits == 1  # second call served from the cache
    assert sorted(leftovers(cache)) == [path, stamp(path)]


def test_wrong_checksum_leaves_nothing(server: Server, cache: Path) -> None:
    body = b"not the published file" * 100
    wrong = "0" * 8 if not sha(body).startswith("0" * 8) else "f" * 8
    url = server.add("w.bin", body)
    with pytest.raises(DownloadError, match="checksum mismatch"):
        fetch(url, sha256_prefix=wrong, progress=False, backoff=0)
    assert server.routes["/w.bin"].hits == 1  # a wrong file is not fetched again
    assert leftovers(cache) == []


def test_truncated_transfer_is_retried(server: Server, cache: Path) -> None:
    body = b"x" * 300_000
    url = server.add("flaky.bin", body, truncate_times=1)
    path = fetch(url, sha256_prefix=sha(body)[:8], progress=False, backoff=0)
    assert path.read_bytes() == body
    assert server.routes["/flaky.bin"].hits == 2


def test_always_truncated_transfer_fails_and_leaves_nothing(server: Server, cache: Path) -> None:
    url = server.add("broken.bin", b"y" * 200_000, truncate_times=99)
    with pytest.raises(DownloadError, match="truncated"):
        fetch(url, progress=False, retries=2, backoff=0)
    assert server.routes["/broken.bin"].hits == 3
    assert leftovers(cache) == []


def test_http_404_is_not_retried(server: Server) -> None:
    url = server.add("gone.bin", b"", status=404)
    with pytest.raises(DownloadError, match="404"):
        fetch(url, progress=False, backoff=0)
    assert server.routes["/gone.bin"].hits == 1


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A local port that is bound but not listening: connections to it are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_offline_says_pass_weights(cache: Path) -> None:
    with closed_port() as port, pytest.raises(DownloadError, match=r"no network: pass --weights PATH"):
        fetch(f"http://127.0.0.1:{port}/w.pth", progress=False, retries=1, backoff=0)
    assert leftovers(cache) == []


def mmseg_checkpoint(state: dict[str, torch.Tensor]) -> bytes:
    """The state dict as mmsegmentation saves it: its key names, inside {"meta", "state_dict"}."""
    renames = [("decode_head.classifier.", "decode_head.conv_seg."), ("aux_head.classifier.", "auxiliary_head.conv_seg."),
               ("aux_head.convs.", "auxiliary_head.convs."), ("decode_head.ppm.stages.", "decode_head.psp_modules."),
               ("decode_head.ppm.bottleneck.", "decode_head.bottleneck.")]
    out = {}
    for key, value in state.items():
        for ours, theirs in renames:
            if key.startswith(ours):
                key = theirs + key[len(ours):]
                break
        out[key] = value
    buffer = io.BytesIO()
    torch.save({"meta": {"mmseg_version": "1.2.2"}, "state_dict": out}, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["mmseg", ""])  # named by the preset, or recognised by its keys
def test_foreign_checkpoint_is_converted_and_cached(server: Server, cache: Path, tmp_path: Path, fmt: str) -> None:
    preset = tiny_preset()
    state, _ = load_weights_file(tiny_weights(tmp_path / "ours.safetensors"))
    body = mmseg_checkpoint(state)
    url = server.add("pspnet_tiny_20240101-0badc0de.pth", body)
    path = fetch_weights(url, preset, fmt=fmt, sha256_prefix=sha(body)[:8], progress=False)
    assert path == cache / "weights" / url_key(url) / "pspnet_tiny_20240101-0badc0de.safetensors"
    converted, meta = load_weights_file(path)
    assert meta["source_format"] == "mmseg" and meta["preset"] == preset.name
    assert converted.keys() == state.keys()
    assert all(torch.equal(converted[k], state[k]) for k in state)
    assert sorted(leftovers(cache)) == [path, stamp(path)]  # the raw download is not kept
    build_model(preset, path)  # loads strictly


def test_safetensors_url_that_is_not_safetensors_is_dropped(server: Server, cache: Path) -> None:
    url = server.add("model.safetensors", b"<html>rate limited</html>")
    with pytest.raises(DownloadError, match="not a safetensors file"):
        fetch_weights(url, tiny_preset(), progress=False)
    assert leftovers(cache) == []


def test_missing_local_weights_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="no such weights file"):
        resolve_weights(tiny_preset(), tmp_path / "nope.safetensors")


def test_segmenter_downloads_the_published_checkpoint(server: Server, cache: Path, tmp_path: Path) -> None:
    local = tiny_weights(tmp_path / "ours.safetensors")
    body = local.read_bytes()
    url = server.add("published.safetensors", body)
    preset = tiny_preset()
    preset.published.weights_url = url
    preset.published.weights_format = ""  # sceneparse's own file, taken as it is
    preset.published.sha256_prefix = sha(body)[:8]
    downloaded = Segmenter.from_pretrained(preset, device="cpu", progress=False)
    from_file = Segmenter.from_pretrained(preset, weights=local, device="cpu")
    image = (torch.rand(40, 60, 3) * 255).to(torch.uint8).numpy()
    assert (downloaded.predict(image) == from_file.predict(image)).all()
    assert (cache / "weights" / url_key(url) / "published.safetensors").read_bytes() == body
    # a URL given as weights goes through the same cache
    assert resolve_weights(preset, url, progress=False) == cache / "weights" / url_key(url) / "published.safetensors"
    assert server.routes["/published.safetensors"].hits == 1
