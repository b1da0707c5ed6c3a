"""Faults leave nothing behind; files get the user's permissions; weights that are not numbers are named
(issue 14, points 6, 8 and 9)."""
from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sceneparse import atomic
from sceneparse import weights as weights_module
from sceneparse.api import build_model
from sceneparse.atomic import DiskFullError, atomic_write
from sceneparse.engine.checkpoint import read_manifest, remove_stale_temporaries
from sceneparse.engine.trainer import TrainOptions, train
from sceneparse.errors import CheckpointError
from sceneparse.weights import load_weights, load_weights_file, save_weights
from tests.test_train_resume import make_voc, tiny_preset


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_voc(tmp_path_factory.mktemp("voc"), n=8)


@pytest.fixture()
def umask_022() -> None:
    old = os.umask(0o022)
    yield
    os.umask(old)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def options(work: Path, root: Path, **more: object) -> TrainOptions:
    return TrainOptions(work_dir=str(work), data_root=str(root), progress=False, validate=False, tensorboard=False,
                        **more)  # type: ignore[arg-type]


# ---------------------------------------------------------------- point 6: temporaries of any writer


def test_temporaries_of_killed_writers_are_removed_on_the_next_start(tmp_path: Path) -> None:
    rust_tmp = tmp_path / ".tmpA1b2C3"  # what safetensors' own writer leaves when killed mid-save
    rust_tmp.write_bytes(b"x" * 1000)
    killed = tmp_path / f".iter_0000002.safetensors.{dead_pid()}.tmp"  # atomic_write's folder of a dead process
    killed.mkdir()
    (killed / ".tmpZ9y8X7").write_bytes(b"y" * 1000)
    png = tmp_path / f".x.png.{dead_pid()}.tmp"  # sceneparse.data.files' writers
    png.write_bytes(b"z")
    live = tmp_path / f".iter_0000004.safetensors.{os.getpid()}.tmp"  # this process: never touched
    live.mkdir()
    keep = tmp_path / "iter_0000001.safetensors"
    keep.write_bytes(b"w")
    assert remove_stale_temporaries(tmp_path) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([keep.name, live.name])


def test_output_trees_and_rewritten_files_lose_the_temporaries_of_killed_runs(tmp_path: Path) -> None:
    pid = dead_pid()
    nested = tmp_path / "preds" / "aachen" / f".aachen_000000_000019.png.{pid}.tmp"  # a killed `test --save-pred`
    nested.parent.mkdir(parents=True)
    nested.write_bytes(b"half a png")
    assert atomic.remove_stale_temporaries(tmp_path, recursive=True) == 1 and not nested.exists()
    stale = tmp_path / f".metrics.json.{pid}.tmp"  # a killed write of the file written again now
    stale.mkdir()
    atomic_write(tmp_path / "metrics.json", lambda tmp: Path(tmp).write_text("{}"))
    assert not stale.exists() and (tmp_path / "metrics.json").read_text() == "{}"


@pytest.mark.parametrize("stage", ["weights", "state"])
def test_a_full_disk_during_a_save_is_named_leaves_nothing_and_resume_works(
        voc_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage: str) -> None:
    work = tmp_path / "work"
    cfg = tiny_preset("train.max_iters=4", "train.checkpoint_interval=2", "train.eval_interval=0")
    saves = {"count": 0}

    def filling(write):  # noqa: ANN001, ANN202 - the real writer, then ENOSPC half-way through the 2nd save
        def run(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            saves["count"] += 1
            if saves["count"] == 2:
                tmp = Path(args[1])
                tmp.write_bytes(b"\0" * 4096)  # what made it to disk before the device filled up
                if stage == "weights":  # safetensors' Rust writer wraps the OSError in its message
                    raise RuntimeError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                                       'message: "No space left on device" })')
                raise OSError(errno.ENOSPC, "No space left on device")
            return write(*args, **kwargs)
        return run

    if stage == "weights":
        monkeypatch.setattr(weights_module, "save_file", filling(weights_module.save_file))
    else:
        monkeypatch.setattr(torch, "save", filling(torch.save))
    with pytest.raises(DiskFullError, match=rf"no space left on device while writing iter_0000004\.\S+ in {work}"):
        train(cfg, options(work, voc_root))
    assert not list(work.glob("iter_0000004*")), "a partial checkpoint was left"
    assert not [p for p in work.iterdir() if p.name.startswith(".")], "temporaries were left"
    assert read_manifest(work)["latest"] == "iter_0000002"
    monkeypatch.undo()  # space freed
    result = train(cfg, options(work, voc_root, resume=True))
    assert result.iteration == 4 and read_manifest(work)["latest"] == "iter_0000004"


def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_good_one_and_says_so(
        voc_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    work = tmp_path / "work"
    cfg = tiny_preset("train.max_iters=6", "train.checkpoint_interval=2", "train.eval_interval=0")
    train(cfg, options(work, voc_root, stop_at=4))
    latest = work / "iter_0000004.safetensors"
    data = bytearray(latest.read_bytes())
    data[-100] ^= 0x40  # one bit of one weight: the file still reads
    latest.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        result = train(cfg, options(work, voc_root, resume=True))
    text = caplog.text
    assert "iter_0000004 is damaged" in text and "resuming from iter_0000002" in text
    assert result.iteration == 6


# ---------------------------------------------------------------- point 8: the process umask


def test_checkpoints_config_and_logs_get_the_umask_mode(voc_root: Path, tmp_path: Path, umask_022: None) -> None:
    work = tmp_path / "work"
    train(tiny_preset("train.max_iters=2", "train.checkpoint_interval=2", "train.eval_interval=2"),
          TrainOptions(work_dir=str(work), data_root=str(voc_root), progress=False, tensorboard=False))
    files = [p for p in work.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"iter_0000002.safetensors", "iter_0000002.state.pt", "checkpoints.json", "config.toml",
            "best.safetensors"} <= names
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in files} == {p.name: "0o644" for p in files}


def test_atomic_write_gives_the_umask_mode_even_to_0600_writers(tmp_path: Path, umask_022: None) -> None:
    def private_writer(tmp: str) -> None:  # like tempfile.mkstemp and Rust's tempfile crate
        fd = os.open(tmp, os.O_CREAT | os.O_WRONLY, 0o600)
        os.write(fd, b"data")
        os.close(fd)

    atomic_write(tmp_path / "out.bin", private_writer)
    save_weights({"w": torch.ones(2)}, tmp_path / "w.safetensors")
    assert (tmp_path / "out.bin").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "w.safetensors").stat().st_mode & 0o777 == 0o644


# ---------------------------------------------------------------- point 9: NaN / inf weights


def test_weights_with_nan_or_inf_are_named_on_load(tmp_path: Path) -> None:
    model = build_model(tiny_preset())
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["decode_head.classifier.weight"][0, 0] = float("nan")
    state["backbone.stem.0.weight" if "backbone.stem.0.weight" in state else next(iter(state))].view(-1)[0] = float("inf")
    path = tmp_path / "diverged.safetensors"
    save_weights(state, path)
    with pytest.raises(CheckpointError, match=r"diverged\.safetensors: 2 tensor\(s\) hold NaN or infinite values "
                                              r"\(.*decode_head\.classifier\.weight"):
        load_weights_file(path)
    pth = tmp_path / "diverged.pth"
    torch.save(state, pth)
    with pytest.raises(CheckpointError, match=r"diverged\.pth: 2 tensor\(s\)"):
        load_weights(model, pth, "pspnet")
