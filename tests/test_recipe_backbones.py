"""ImageNet backbones by URL and checksum through the download cache (a local HTTP server, never the internet)."""
from __future__ import annotations

import hashlib
import io
import logging
from pathlib import Path

import pytest
import torch

from sceneparse.engine import pretrained
from sceneparse.engine.checkpoint import load_checkpoint
from sceneparse.engine.pretrained import load_pretrained_backbone, manual_path, resolve_pretrained
from sceneparse.engine.trainer import TrainOptions, train
from sceneparse.errors import CheckpointError, ConfigError
from sceneparse.hub import DownloadError
from sceneparse.models.resnet import ResNet
from tests.test_hub import Server, cache, closed_port, server  # noqa: F401  (pytest fixtures)
from tests.test_train_resume import make_voc, tiny_preset


def backbone_file(seed: int = 0) -> tuple[ResNet, bytes]:
    """The tiny presets' backbone (R-18, V1c stem, 8 wide) saved as an mmsegmentation ImageNet file."""
    torch.manual_seed(seed)
    net = ResNet(depth=18, stem="v1c", base_channels=8, stem_channels=8)
    for p in net.parameters():
        p.data.normal_()
    buffer = io.BytesIO()
    torch.save({"state_dict": {k: v for k, v in net.state_dict().items() if "num_batches" not in k}}, buffer)
    return net, buffer.getvalue()


def named(body: bytes) -> str:
    """A published-style file name: the first 8 hex digits of its SHA-256 before the suffix."""
    return f"resnet18_v1c-{hashlib.sha256(body).hexdigest()[:8]}.pth"


def test_train_fetches_the_backbone_its_config_names(server: Server, tmp_path: Path) -> None:  # noqa: F811
    net, body = backbone_file()
    url = server.add(named(body), body)
    cfg = tiny_preset("train.max_iters=1", "train.eval_interval=0", "train.lr=1e-12")
    train(cfg, TrainOptions(work_dir=str(tmp_path / "run"), data_root=str(make_voc(tmp_path / "voc", n=8)),
                            progress=False, pretrained=url))  # what `--pretrained URL` does
    weights, _, _ = load_checkpoint(tmp_path / "run")
    for key, value in net.state_dict().items():
        if key.endswith("weight") and value.dim() == 4:  # convolutions: moved by 1e-12 x a gradient at most
            assert torch.allclose(weights[f"backbone.{key}"], value, atol=1e-6), key
    assert server.routes["/" + named(body)].hits == 1


def test_a_wrong_checksum_is_refused(server: Server) -> None:  # noqa: F811
    _, body = backbone_file()
    url = server.add("resnet18_v1c-00000000.pth", body)
    with pytest.raises(DownloadError, match="checksum mismatch"):
        resolve_pretrained(url, progress=False)
    with pytest.raises(ConfigError, match="pretrained_sha256"):  # a checksum that contradicts the file name
        resolve_pretrained(url, "12345678", progress=False)


def test_offline_names_the_url_and_where_to_put_the_file(cache: Path) -> None:  # noqa: F811
    with closed_port() as port:
        url = f"http://127.0.0.1:{port}/resnet18_v1c-0123abcd.pth"
        with pytest.raises(DownloadError) as error:
            resolve_pretrained(url, progress=False)
    message = str(error.value)
    assert url in message and str(manual_path(url)) in message and "--pretrained" in message


def test_a_file_put_by_hand_is_used_offline_when_its_checksum_matches(cache: Path) -> None:  # noqa: F811
    _, body = backbone_file()
    with closed_port() as port:
        url = f"http://127.0.0.1:{port}/{named(body)}"
        manual_path(url).parent.mkdir(parents=True)
        manual_path(url).write_bytes(body)
        assert resolve_pretrained(url, progress=False) == manual_path(url)
        manual_path(url).write_bytes(body + b"x")
        with pytest.raises(CheckpointError, match="SHA-256"):
            resolve_pretrained(url, progress=False)


def test_scheme_names_resolve_to_the_published_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[str, str]] = []
    monkeypatch.setattr(pretrained, "fetch", lambda url, sha, progress, manual: asked.append((url, sha)) or Path(url))
    resolve_pretrained("open-mmlab://resnet50_v1c", progress=False)
    resolve_pretrained("torchvision://resnet101", progress=False)
    assert asked == [("https://download.openmmlab.com/pretrain/third_party/resnet50_v1c-2cccc1ad.pth", "2cccc1ad"),
                     ("https://download.pytorch.org/models/resnet101-63fe2227.pth", "63fe2227")]
    assert resolve_pretrained("none") is None and resolve_pretrained("") is None
    with pytest.raises(CheckpointError, match="hszhao/semseg"):
        resolve_pretrained("semseg://resnet50_v2")


def test_random_init_of_a_published_recipe_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = tiny_preset("train.max_iters=1", "train.eval_interval=0")
    with caplog.at_level(logging.WARNING):
        train(cfg, TrainOptions(work_dir=str(tmp_path / "run"), data_root=str(make_voc(tmp_path / "voc", n=8)),
                                progress=False))
    assert "published mIoU will not be reached" in caplog.text


def test_semseg_imagenet_files_load_into_the_semseg_stem(tmp_path: Path) -> None:
    """semseg's ResNet(deep_base=True) names its stem conv1/bn1, conv2/bn2, conv3/bn3."""
    source = ResNet(depth=18, stem="semseg", base_channels=8, stem_channels=16)
    renames = {"stem.0.": "conv1.", "stem.1.": "bn1.", "stem.3.": "conv2.", "stem.4.": "bn2.", "stem.6.": "conv3.",
               "stem.7.": "bn3."}
    state = {}
    for key, value in source.state_dict().items():
        for ours, theirs in renames.items():
            key = key.replace(ours, theirs) if key.startswith(ours) else key
        state[key] = value
    path = tmp_path / "resnet18_v2.pth"
    torch.save({**state, "fc.weight": torch.zeros(3, 64)}, path)
    target = ResNet(depth=18, stem="semseg", base_channels=8, stem_channels=16)
    assert load_pretrained_backbone(target, path) == "semseg"
    assert all(torch.equal(target.state_dict()[k], v) for k, v in source.state_dict().items())


def test_resume_needs_no_backbone(tmp_path: Path) -> None:
    """--resume takes every weight from the checkpoint: an unreachable backbone URL does not matter."""
    cfg = tiny_preset("train.max_iters=2", "train.eval_interval=0")
    voc = make_voc(tmp_path / "voc", n=8)
    train(cfg, TrainOptions(work_dir=str(tmp_path / "run"), data_root=str(voc), progress=False, stop_at=1))
    with closed_port() as port:
        result = train(cfg, TrainOptions(work_dir=str(tmp_path / "run"), data_root=str(voc), progress=False,
                                         resume=True, pretrained=f"http://127.0.0.1:{port}/resnet18_v1c-0123abcd.pth"))
    assert result.iteration == 2
