"""A newcomer's first hour: checkpoints wherever presets go, one filter matcher, consistent commands.

Each test runs the command line as a user types it, on a narrow R-18 PSPNet checkpoint
(tests/test_eval_cli.py's `tiny_weights`, whose metadata embeds its config as training writes it).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tomllib
from PIL import Image

from sceneparse import __version__
from sceneparse.cli import main
from sceneparse.config import load_preset, preset_names
from sceneparse.convert.zoo import zoo_rows
from tests.test_eval_cli import TINY, tiny_weights


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_weights(tmp_path_factory.mktemp("firsthour") / "iter_0000020.safetensors")


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if not line.startswith("sceneparse: using")]
    assert len(lines) == 1 and "Traceback" not in err and "\x1b" not in err, err
    return lines[0]


# ---------------------------------------------------------------- 1. a checkpoint where a preset goes


def test_show_and_summary_read_a_checkpoints_embedded_config(ckpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", str(ckpt)]) == 0
    captured = capsys.readouterr()
    doc = tomllib.loads(captured.out)
    assert doc["model"]["backbone"]["base_channels"] == 8 and doc["model"]["num_classes"] == 5
    assert f"the config embedded in {ckpt}" in captured.err
    assert main(["show", str(ckpt), "--set", "train.lr=0.5"]) == 0
    assert tomllib.loads(capsys.readouterr().out)["train"]["lr"] == 0.5
    assert main(["summary", str(ckpt), "--size", "64x64"]) == 0
    assert "output stride 8" in capsys.readouterr().out


def test_a_work_dir_stands_for_its_config(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", str(ckpt)]) == 0
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.toml").write_text(capsys.readouterr().out)
    assert main(["show", str(tmp_path / "run"), "--set", "train.max_iters=7"]) == 0
    captured = capsys.readouterr()
    assert tomllib.loads(captured.out)["train"]["max_iters"] == 7 and "work dir" in captured.err


def test_benchmark_train_reads_a_checkpoint_and_picks_its_own_batch(ckpt: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["benchmark", str(ckpt), "--train", "--size", "64x64", "--iters", "1", "--warmup", "0",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["settings"]["batch"] == 2 and result["settings"]["train"] is True


@pytest.mark.parametrize("name, content, expected", [
    ("model.onnx", b"\x08\x07", "ONNX export"),
    ("mine.pth", b"PK\x03\x04 not really", "--weights"),
    ("weights.caffemodel", b"\x0a\x03abc", "convert it first"),
    ("garbage.dat", bytes(range(256)) * 4, "binary data"),
    ("iter_0000001.safetensors", b"\xff\xfe not safetensors", "safetensors"),
])
@pytest.mark.parametrize("command", ["show", "summary", "test", "benchmark"])
def test_anything_else_is_a_clear_one_line_error(command: str, name: str, content: bytes, expected: str,
                                                 tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    assert main([command, str(path)]) == 1
    line = _one_line_error(capsys)
    assert str(path) in line and expected in line and "UnicodeDecodeError" not in line


def test_test_and_export_take_the_checkpoints_weights(ckpt: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxruntime")
    out = tmp_path / "tiny.onnx"
    assert main(["export", "onnx", str(ckpt), str(out), "--size", "64x96"]) == 0  # no --weights: the checkpoint's
    assert "relative L2" in capsys.readouterr().out
    # test: the data root is what is missing, not the weights
    assert main(["test", str(ckpt), "--data-root", str(tmp_path / "nowhere"), "--device", "cpu"]) == 1
    line = _one_line_error(capsys)
    assert "nowhere" in line and "weights" not in line


def test_export_without_weights_falls_back_to_the_published_checkpoint(monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path) -> None:
    import sceneparse.hub as hub

    asked = []

    def published(preset, progress=True):  # what `test` does without --weights: the preset's published file
        asked.append(preset.name)
        raise hub.DownloadError("offline in the tests")

    monkeypatch.setattr(hub, "pretrained_weights", published)
    assert main(["export", "onnx", "pspnet_r50-d8_512x1024_40k_cityscapes", str(tmp_path / "x.onnx")]) == 1
    assert asked == ["pspnet_r50-d8_512x1024_40k_cityscapes"]


# ---------------------------------------------------------------- 6. ONNX metadata


def test_onnx_export_carries_its_metadata_and_infer_needs_no_preset(ckpt: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    out = tmp_path / "tiny.onnx"
    assert main(["export", "onnx", str(ckpt), str(out), "--dynamic", "--no-check"]) == 0
    props = {p.key: p.value for p in onnx.load(str(out), load_external_data=False).metadata_props}
    preset = load_preset("pspnet_r18-d8_512x1024_80k_cityscapes", TINY)
    assert json.loads(props["num_classes"]) == 5 and json.loads(props["align_corners"]) is False
    assert json.loads(props["mean"]) == list(preset.data.mean) and json.loads(props["std"]) == list(preset.data.std)
    assert len(json.loads(props["classes"])) == 5 and len(json.loads(props["palette"])) == 5
    assert props["input_size"].startswith("any") and props["preset"] == preset.name
    assert json.loads(props["sceneparse"])["config"]["model"]["num_classes"] == 5
    photo = tmp_path / "photos" / "a.png"
    photo.parent.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(photo)
    # `infer model.onnx photos/` and `infer --onnx model.onnx photos/`: no preset
    assert main(["infer", str(out), str(photo.parent), "--out", str(tmp_path / "o1")]) == 0
    assert main(["infer", "--onnx", str(out), str(photo.parent), "--out", str(tmp_path / "o2")]) == 0
    assert (tmp_path / "o1" / "a.png").is_file() and (tmp_path / "o2" / "a.png").is_file()
    capsys.readouterr()
    # a 5-class export under a 150-class preset
    assert main(["infer", "pspnet_r50-d8_512x512_80k_ade20k", "--onnx", str(out), str(photo),
                 "--out", str(tmp_path / "o3")]) == 1
    line = _one_line_error(capsys)
    assert "5 classes" in line and "150" in line


# ---------------------------------------------------------------- 3. filters agree with the table


def _listed(capsys: pytest.CaptureFixture[str], prefix: str = "") -> set[str]:
    lines = capsys.readouterr().out.splitlines()[1:]
    return {line.split()[0] for line in lines if line.strip() and not line[0].isdigit() and line.startswith(prefix)}


def test_presets_and_zoo_filter_alike(capsys: pytest.CaptureFixture[str]) -> None:
    mmseg = {n for n in preset_names() if load_preset(n).published.source == "mmsegmentation"}
    assert main(["presets", "--source", "mmseg"]) == 0
    assert _listed(capsys) == mmseg
    assert main(["zoo", "--source", "mmseg"]) == 0
    assert _listed(capsys) == {r.preset for r in zoo_rows(source="mmsegmentation")} <= mmseg
    assert main(["presets", "--model", "psp", "--dataset", "ade"]) == 0
    listed = _listed(capsys)
    assert listed and all(load_preset(n).model.name == "pspnet" and load_preset(n).data.dataset == "ade20k"
                          for n in listed)
    assert len(listed) == sum(1 for n in preset_names() if load_preset(n).model.name == "pspnet"
                              and load_preset(n).data.dataset == "ade20k")
    assert main(["zoo", "--model", "psp", "--dataset", "ade"]) == 0
    assert _listed(capsys) <= listed
    assert main(["presets", "--dataset", "voc12aug"]) == 0  # mmsegmentation's name for it
    voc = _listed(capsys)
    assert main(["presets", "--dataset", "voc"]) == 0
    assert _listed(capsys) == voc and voc


def test_presets_table_has_the_memory_column_the_readme_promises(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["presets", "--model", "pspnet", "--dataset", "cityscapes", "--source", "mmseg"]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert "mem" in header and "fps" in header
    row = next(line for line in out.splitlines() if line.startswith("pspnet_r50-d8_512x1024_40k_cityscapes "))
    published = load_preset("pspnet_r50-d8_512x1024_40k_cityscapes").published
    assert f"{published.mem_gb:.1f}" in row.split() and f"{published.fps:.2f}" in row.split()


# ---------------------------------------------------------------- 7. consistent commands


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"sceneparse {__version__}"


def test_show_refuses_set_values_train_would_refuse(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "pspnet_r50-d8_512x1024_40k_cityscapes", "--set", "data.crop_size=[0,512]"]) == 1
    assert "data.crop_size" in _one_line_error(capsys)


def test_infer_names_a_missing_input_and_has_a_default_out(ckpt: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["infer", str(ckpt), str(tmp_path / "no_such_photo.jpg")]) == 1
    line = _one_line_error(capsys)
    assert "no_such_photo.jpg" in line and "dataset root" not in line
    photo = tmp_path / "p.png"
    Image.fromarray(np.zeros((32, 48, 3), dtype=np.uint8)).save(photo)
    monkeypatch.chdir(tmp_path)
    assert main(["infer", str(ckpt), str(photo), "--device", "cpu"]) == 0
    assert (tmp_path / "infer_out" / "p.png").is_file()


def test_stop_at_says_that_it_stopped(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.test_eval_cli import synth_custom

    data = synth_custom(tmp_path / "data", 2)
    work = tmp_path / "run"
    overrides = ["train.max_iters=3", "train.batch_size=2", "data.crop_size=[32,32]", "train.pretrained=none",
                 "train.eval_interval=0", "train.log_interval=1"]
    args = ["train", str(ckpt), "--data-root", str(data), "--work-dir", str(work), "--stop-at", "1",
            "--no-validate", "--device", "cpu"]
    for item in overrides:
        args += ["--set", item]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "stopped at iteration 1 of 3" in out and "--resume" in out
