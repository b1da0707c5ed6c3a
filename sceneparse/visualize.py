"""Pictures of predictions and scores: palette PNGs, colour overlays, legends, and metric plots.

Images are numpy arrays (H x W x 3 uint8 RGB, label maps H x W of class ids). Plots use
matplotlib's object API with the Agg canvas, so nothing depends on a display or on pyplot's
global state.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sceneparse.data.files import write_png

Palette = Sequence[Sequence[int]]


def palette_array(palette: Palette, size: int = 256) -> np.ndarray:
    """`size` x 3 uint8 lookup table: the palette's colours, black for ids beyond it (e.g. ignore)."""
    table = np.zeros((size, 3), dtype=np.uint8)
    colours = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)[:size]
    table[: len(colours)] = colours
    return table


def colorize(label: np.ndarray, palette: Palette) -> np.ndarray:
    """H x W class ids -> H x W x 3 colours."""
    ids = np.asarray(label).astype(np.int64)
    table = palette_array(palette, max(256, int(ids.max(initial=0)) + 1))
    return table[np.clip(ids, 0, None)]


def overlay(image: np.ndarray, label: np.ndarray, palette: Palette, alpha: float = 0.5) -> np.ndarray:
    """The image with the label's colours blended over it; `alpha` is the weight of the colours."""
    if image.shape[:2] != label.shape[:2]:
        raise ValueError(f"image {image.shape[:2]} and label {label.shape[:2]} differ in size")
    colours = colorize(label, palette).astype(np.float32)
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colours
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def save_label_png(path: str | Path, label: np.ndarray, palette: Palette) -> None:
    """An 8-bit palette PNG: the pixel values are the class ids, the palette only shows them in colour."""
    if int(label.max(initial=0)) > 255 or int(label.min(initial=0)) < 0:
        raise ValueError("a palette PNG holds class ids 0..255")
    flat = [int(v) for v in palette_array(palette).reshape(-1)]
    write_png(path, np.asarray(label).astype(np.uint8), palette=flat)


def legend(class_ids: Sequence[int], class_names: Sequence[str], palette: Palette,
           swatch: int = 18, width: int = 260) -> np.ndarray:
    """A column of colour swatches with the names of `class_ids`, as an RGB image."""
    font = ImageFont.load_default()
    row = swatch + 6
    height = max(1, len(class_ids)) * row + 6
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    table = palette_array(palette)
    for i, class_id in enumerate(class_ids):
        top = 6 + i * row
        colour = tuple(int(c) for c in table[class_id]) if class_id < len(table) else (0, 0, 0)
        draw.rectangle([6, top, 6 + swatch, top + swatch], fill=colour, outline=(0, 0, 0))
        name = class_names[class_id] if class_id < len(class_names) else f"class {class_id}"
        draw.text((14 + swatch, top + swatch // 2 - 6), f"{class_id}: {name}", fill=(0, 0, 0), font=font)
    return np.asarray(img)


# ---------------------------------------------------------------- metric plots


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save_figure(fig: Any, path: str | Path) -> None:
    """Write a figure as PNG atomically (a crash leaves no half-written picture)."""
    from sceneparse.weights import atomic_write

    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))


def plot_confusion(matrix: np.ndarray, class_names: Sequence[str], path: str | Path) -> None:
    """The confusion matrix with each row (ground-truth class) normalised to sum to 1, as a PNG.

    Rows of classes absent from the ground truth stay empty rather than pretending to be 0.
    """
    m = np.asarray(matrix, dtype=np.float64)
    rows = m.sum(axis=1, keepdims=True)
    normalised = np.divide(m, rows, out=np.full_like(m, np.nan), where=rows > 0)
    n = len(class_names)
    side = min(40.0, max(6.0, 0.35 * n + 3))
    fig = _figure(side, side)
    ax = fig.add_subplot(1, 1, 1)
    shown = ax.imshow(normalised, cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label="share of the ground-truth class")
    font = max(4.0, min(9.0, 300.0 / max(n, 1)))
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels(class_names, rotation=90, fontsize=font)
    ax.set_yticklabels(class_names, fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    ax.set_title("confusion matrix (rows normalised)")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if not np.isnan(normalised[i, j]) and normalised[i, j] >= 0.005:
                    colour = "black" if normalised[i, j] > 0.6 else "white"
                    ax.text(j, i, f"{normalised[i, j]:.2f}", ha="center", va="center", fontsize=font - 1, color=colour)
    fig.tight_layout()
    _save_figure(fig, path)


def plot_class_iou(metrics: dict[str, Any], path: str | Path) -> None:
    """Per-class IoU as a horizontal bar chart, with the mIoU as a line; undefined classes marked n/a."""
    names = list(metrics["per_class"])
    values = [metrics["per_class"][name]["IoU"] for name in names]
    n = len(names)
    fig = _figure(8.0, max(3.0, 0.22 * n + 1.2))
    ax = fig.add_subplot(1, 1, 1)
    heights = [100 * v if v is not None else 0.0 for v in values]
    bars = ax.barh(range(n), heights, color="tab:blue")
    for bar, value in zip(bars, values, strict=True):
        if value is None:
            bar.set_color("lightgrey")
            ax.text(1, bar.get_y() + bar.get_height() / 2, "n/a", va="center", fontsize=7)
    if metrics.get("mIoU") is not None:
        ax.axvline(100 * metrics["mIoU"], color="tab:red", linestyle="--", label=f"mIoU {100 * metrics['mIoU']:.2f}")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_yticks(range(n))
    ax.set_yticklabels(names, fontsize=max(4.0, min(9.0, 400.0 / max(n, 1))))
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("IoU (%)")
    ax.set_title("per-class IoU")
    fig.tight_layout()
    _save_figure(fig, path)
