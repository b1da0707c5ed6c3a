"""Videos and cameras: every frame through `Segmenter.predict`, as the images of `sceneparse infer`.

    sceneparse infer PRESET clip.mp4 --out DIR                 # DIR/clip_overlay.mp4
    sceneparse infer PRESET clip.mp4 --out DIR --save-labels   # + DIR/clip_labels/frame_000000.png ...
    sceneparse infer PRESET --camera 0                         # a live window (q or Esc quits)

Decoding and encoding are OpenCV's (FFmpeg inside `opencv-python-headless`), as in mmsegmentation's
video demo. The overlaid video keeps the source's frame rate and size; it is written as MPEG-4
Part 2 (FourCC `mp4v`) in an .mp4 file, the codec OpenCV's pip wheels can encode everywhere (they
ship no H.264 encoder), and it is written to a temporary file first, so a stopped run leaves no
truncated video. A live window needs OpenCV's GUI (`opencv-python`, not the headless wheel) and
a display; without either, the error says so.
"""
from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from sceneparse.errors import ConfigError, DataError
from sceneparse.segmenter import Segmenter
from sceneparse.visualize import overlay, save_label_png

if TYPE_CHECKING:
    from cv2 import VideoCapture

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v")
OUTPUT_CODEC = "mp4v"
OUTPUT_SUFFIX = ".mp4"
FALLBACK_FPS = 25.0  # for streams that do not state their frame rate
QUIT_KEYS = (ord("q"), 27)  # q, Esc


def _cv2() -> ModuleType:
    """OpenCV, imported when a video is met, with a clear error where it is missing."""
    try:
        import cv2
    except ImportError:
        raise ConfigError("videos and cameras need OpenCV: pip install opencv-python-headless "
                          "(or opencv-python for a --camera window)") from None
    return cv2


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


@dataclass(frozen=True)
class VideoInfo:
    fps: float
    width: int
    height: int
    frames: int | None  # what the container states; None when it does not (streams, some codecs)


@dataclass(frozen=True)
class VideoResult:
    frames: int  # frames decoded and labelled
    video: Path  # the overlaid video
    labels: Path | None  # the folder of per-frame label PNGs, if asked for


def open_video(path: str | Path) -> tuple[VideoCapture, VideoInfo]:
    """A capture positioned at the first frame, and what it states (DataError naming the file if unreadable)."""
    cv2 = _cv2()
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such video file")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise DataError(f"{path}: not a readable video (OpenCV's FFmpeg could not open it); "
                        "check that the file is complete and is an mp4, avi or mov")
    fps = float(capture.get(cv2.CAP_PROP_FPS))
    if not math.isfinite(fps) or fps <= 0:
        log.warning("%s states no frame rate; writing its overlay at %g fps", path, FALLBACK_FPS)
        fps = FALLBACK_FPS
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    info = VideoInfo(fps, int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                     count if count > 0 else None)
    return capture, info


def read_frames(capture: VideoCapture, batch: int) -> Iterator[list[np.ndarray]]:
    """The capture's frames as RGB arrays, `batch` at a time (the last batch may be shorter)."""
    cv2 = _cv2()
    frames: list[np.ndarray] = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        if len(frames) == batch:
            yield frames
            frames = []
    if frames:
        yield frames


class _AtomicVideoWriter:
    """OpenCV's writer on a temporary file beside `path`, renamed over it by `commit` (removed otherwise)."""

    def __init__(self, path: Path, fps: float, width: int, height: int) -> None:
        self.cv2 = cv2 = _cv2()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # OpenCV picks the container from the suffix, so the temporary name keeps it
        self.temp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
        self.writer = cv2.VideoWriter(str(self.temp), cv2.VideoWriter_fourcc(*OUTPUT_CODEC), fps, (width, height))
        if not self.writer.isOpened():
            self.temp.unlink(missing_ok=True)
            raise DataError(f"{path}: this OpenCV build cannot write {OUTPUT_CODEC} video (check `pip show "
                            "opencv-python-headless`)")

    def write(self, rgb: np.ndarray) -> None:
        self.writer.write(self.cv2.cvtColor(rgb, self.cv2.COLOR_RGB2BGR))

    def commit(self) -> None:
        self.writer.release()
        os.replace(self.temp, self.path)

    def discard(self) -> None:
        self.writer.release()
        self.temp.unlink(missing_ok=True)


def label_video(segmenter: Segmenter, source: str | Path, out_dir: str | Path, name: str, alpha: float = 0.5,
                save_labels: bool = False, batch: int = 1, progress: bool = True) -> VideoResult:
    """OUT/NAME_overlay.mp4 (same fps and size as `source`) and, with `save_labels`, a palette PNG of
    class ids per frame in OUT/NAME_labels/. Frames go through `segmenter.predict`, `batch` at a time."""
    if batch < 1:
        raise ConfigError(f"--batch {batch}: expected 1 or more frames per forward")
    capture, info = open_video(source)
    out_dir = Path(out_dir)
    video_path = out_dir / f"{name}_overlay{OUTPUT_SUFFIX}"
    labels_dir = out_dir / f"{name}_labels" if save_labels else None
    done = 0
    try:
        writer = _AtomicVideoWriter(video_path, info.fps, info.width, info.height)
        try:
            with tqdm(total=info.frames, desc=Path(source).name, unit="frame", disable=not progress) as bar:
                for frames in read_frames(capture, batch):
                    for frame, pred in zip(frames, segmenter.predict(frames), strict=True):
                        writer.write(overlay(frame, pred, segmenter.palette, alpha))
                        if labels_dir is not None:
                            save_label_png(labels_dir / f"frame_{done:06d}.png", pred, segmenter.palette)
                        done += 1
                    bar.update(len(frames))
            if done == 0:
                raise DataError(f"{source}: no frame could be decoded (an empty or damaged video)")
            writer.commit()
        except BaseException:
            writer.discard()
            raise
    finally:
        capture.release()
    if info.frames is not None and done < info.frames:
        log.warning("%s: decoded %d of the %d frames the file states (a damaged or cut video?)", source, done,
                    info.frames)
    return VideoResult(done, video_path, labels_dir)


# ------------------------------------------------------------------------------------------ camera


def window_problem() -> str:
    """Why OpenCV cannot open a window here ('' when it can): a headless build, or no display."""
    cv2 = _cv2()
    gui = ""
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GUI:"):
            gui = line.split(":", 1)[1].strip()
    if gui.upper() == "NONE":
        return ("the installed OpenCV has no GUI (the opencv-python-headless wheel); for a window install "
                "the GUI build: pip uninstall opencv-python-headless && pip install opencv-python")
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "there is no display ($DISPLAY and $WAYLAND_DISPLAY are unset); run it in a desktop session"
    return ""


def require_window(index: int) -> None:
    """ConfigError saying what is missing when `--camera index` cannot show a window here."""
    problem = window_problem()
    if problem:
        raise ConfigError(f"--camera {index} shows a live window, but {problem}; or label a recording: "
                          "sceneparse infer MODEL clip.mp4")


def live_overlays(segmenter: Segmenter, capture: VideoCapture, alpha: float = 0.5) -> Iterator[np.ndarray]:
    """The overlay of each frame the capture delivers, as it delivers them (until it stops)."""
    for frames in read_frames(capture, 1):
        yield overlay(frames[0], segmenter.predict(frames[0]), segmenter.palette, alpha)


def run_camera(segmenter: Segmenter, index: int, alpha: float = 0.5) -> int:
    """Show camera `index` labelled live until q / Esc or the window is closed; returns the frames shown."""
    cv2 = _cv2()
    require_window(index)
    capture = cv2.VideoCapture(index)
    if not capture.isOpened():
        capture.release()
        raise DataError(f"camera {index}: cannot be opened (no such camera, or another program uses it); "
                        "on Linux `ls /dev/video*` lists the cameras")
    title = f"sceneparse: camera {index} (q or Esc quits)"
    shown = 0
    try:
        for picture in live_overlays(segmenter, capture, alpha):
            cv2.imshow(title, cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
            shown += 1
            if (cv2.waitKey(1) & 0xFF) in QUIT_KEYS or cv2.getWindowProperty(title, cv2.WND_PROP_VISIBLE) < 1:
                break
    finally:
        capture.release()
        cv2.destroyAllWindows()
    if shown == 0:
        raise DataError(f"camera {index}: opened but delivered no frame")
    return shown
