"""`sceneparse infer` on videos and cameras: each frame labelled as `Segmenter.predict` labels it.

The reference frames are decoded here with OpenCV itself (BGR -> RGB), independently of
`sceneparse.video`, and labelled one by one with `Segmenter.predict`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sceneparse.cli import main
from sceneparse.data.files import read_label
from sceneparse.errors import DataError
from sceneparse.segmenter import Segmenter
from sceneparse.video import label_video, live_overlays, open_video, run_camera, window_problem
from sceneparse.visualize import overlay
from tests.test_eval_cli import tiny_preset, tiny_weights

cv2 = pytest.importorskip("cv2")

FRAMES, WIDTH, HEIGHT, FPS = 8, 64, 48, 12.0


def write_clip(path: Path, fourcc: str = "mp4v") -> Path:
    """FRAMES frames of a smooth colour field drifting to the right (so the labels change over time)."""
    rng = np.random.default_rng(3)
    coarse = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    field = cv2.resize(coarse, (WIDTH * 2, HEIGHT), interpolation=cv2.INTER_LINEAR)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), FPS, (WIDTH, HEIGHT))
    assert writer.isOpened()
    for i in range(FRAMES):
        writer.write(np.ascontiguousarray(field[:, 6 * i:6 * i + WIDTH]))
    writer.release()
    return path


def decoded_frames(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_weights(tmp_path_factory.mktemp("video") / "tiny.safetensors")


@pytest.fixture(scope="module")
def segmenter(weights: Path) -> Segmenter:
    return Segmenter.from_pretrained(tiny_preset(), weights, device="cpu")


def test_video_gives_overlay_video_and_per_frame_labels(weights: Path, segmenter: Segmenter,
                                                       tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    clip = write_clip(tmp_path / "clip.mp4")
    out = tmp_path / "out"
    status = main(["infer", str(weights), str(clip), "--out", str(out), "--save-labels", "--alpha", "0.6",
                   "--device", "cpu"])
    assert status == 0, capsys.readouterr().err
    assert "labelled 1 of 1 images and videos" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["clip_labels", "clip_overlay.mp4"]  # no temporary left

    frames = decoded_frames(clip)
    assert len(frames) == FRAMES
    written = cv2.VideoCapture(str(out / "clip_overlay.mp4"))
    assert written.get(cv2.CAP_PROP_FPS) == pytest.approx(FPS)
    written.release()
    overlays = decoded_frames(out / "clip_overlay.mp4")
    assert len(overlays) == FRAMES and all(o.shape == (HEIGHT, WIDTH, 3) for o in overlays)

    labels = sorted((out / "clip_labels").glob("*.png"))
    assert [p.name for p in labels] == [f"frame_{i:06d}.png" for i in range(FRAMES)]
    distinct = set()
    for frame, label_png, shown in zip(frames, labels, overlays, strict=True):
        ids = read_label(label_png)
        np.testing.assert_array_equal(ids, segmenter.predict(frame))
        distinct.add(ids.tobytes())
        # mp4v is lossy: the written frame is close to the overlay, much closer than to the bare frame
        expected = overlay(frame, ids, segmenter.palette, 0.6).astype(int)
        assert np.abs(shown.astype(int) - expected).mean() < 0.5 * np.abs(shown.astype(int) - frame).mean()
    assert len(distinct) > 1  # the labels follow the moving picture


@pytest.mark.parametrize(("suffix", "fourcc"), [(".avi", "MJPG"), (".mov", "mp4v")])
def test_other_containers_and_batched_frames(segmenter: Segmenter, tmp_path: Path, suffix: str,
                                             fourcc: str) -> None:
    clip = write_clip(tmp_path / f"clip{suffix}", fourcc)
    result = label_video(segmenter, clip, tmp_path / "out", "clip", save_labels=True, batch=3, progress=False)
    assert result.frames == FRAMES and result.video == tmp_path / "out" / "clip_overlay.mp4"
    assert len(decoded_frames(result.video)) == FRAMES
    # three frames per forward (3 + 3 + 2): the same labels as one at a time, up to rounding
    agree = [np.mean(read_label(result.labels / f"frame_{i:06d}.png") == segmenter.predict(frame))
             for i, frame in enumerate(decoded_frames(clip))]
    assert min(agree) > 0.99


def test_unreadable_video_is_named_and_skipped(weights: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    good = write_clip(tmp_path / "good.mp4")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 10)
    out = tmp_path / "out"
    assert main(["infer", str(weights), str(broken), str(good), "--out", str(out), "--device", "cpu"]) == 1
    captured = capsys.readouterr()
    assert "broken.mp4: not a readable video" in captured.err
    assert "labelled 1 of 2" in captured.out
    assert sorted(p.name for p in out.iterdir()) == ["good_overlay.mp4"]
    with pytest.raises(DataError, match="missing.mov: no such video file"):
        open_video(tmp_path / "missing.mov")


def test_truncated_video_leaves_no_output(segmenter: Segmenter, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.avi", "MJPG")
    cut = tmp_path / "cut.avi"
    cut.write_bytes(clip.read_bytes()[:400])  # the header survives, no frame does
    with pytest.raises(DataError, match="cut.avi"):
        label_video(segmenter, cut, tmp_path / "out", "cut", progress=False)
    assert not list(tmp_path.rglob("*.mp4"))  # neither the video nor its temporary file


def test_live_overlays_label_each_frame(segmenter: Segmenter, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4")
    capture, info = open_video(clip)
    assert (info.width, info.height, info.frames) == (WIDTH, HEIGHT, FRAMES)
    shown = list(live_overlays(segmenter, capture, 0.5))
    capture.release()
    frames = decoded_frames(clip)
    assert len(shown) == FRAMES
    for frame, picture in zip(frames, shown, strict=True):
        np.testing.assert_array_equal(picture, overlay(frame, segmenter.predict(frame), segmenter.palette, 0.5))


def test_camera_errors_say_what_is_missing(segmenter: Segmenter, weights: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    headless = "GUI:                           NONE\n"
    monkeypatch.setattr(cv2, "getBuildInformation", lambda: headless)
    assert "pip install opencv-python" in window_problem()
    assert main(["infer", str(weights), "--camera", "0", "--out", str(tmp_path), "--device", "cpu"]) == 1
    assert "--camera 0 shows a live window, but the installed OpenCV has no GUI" in capsys.readouterr().err

    monkeypatch.setattr(cv2, "getBuildInformation", lambda: "GUI:                           GTK3\n")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    if not window_problem():  # not Linux: a display is assumed
        pytest.skip("displays are only detected from the environment on Linux")
    assert "no display" in window_problem()
    monkeypatch.setenv("DISPLAY", ":0")
    assert window_problem() == ""
    with pytest.raises(DataError, match="camera 97: cannot be opened"):
        run_camera(segmenter, 97)


def test_camera_and_files_together_or_nothing_is_an_error(weights: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    clip = write_clip(tmp_path / "clip.mp4")
    assert main(["infer", str(weights), str(clip), "--camera", "0", "--out", str(tmp_path / "o")]) == 1
    assert "--camera reads camera 0; drop the files" in capsys.readouterr().err
    assert main(["infer", str(weights), "--out", str(tmp_path / "o")]) == 1
    assert "nothing to label" in capsys.readouterr().err
    assert main(["infer", str(weights), str(clip), "--batch", "0", "--out", str(tmp_path / "o")]) == 1
    assert "--batch 0" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
