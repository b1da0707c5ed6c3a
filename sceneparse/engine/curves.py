"""Training curves from a work dir's log.jsonl: loss, learning rate and validation mIoU, as one PNG."""
from __future__ import annotations

from pathlib import Path

from sceneparse.engine.run_log import LOG_FILE, read_log
from sceneparse.errors import ConfigError

CURVES_FILE = "curves.png"


def plot_curves(work_dir: str | Path, out: str | Path | None = None) -> Path:
    """Draw the curves of `work_dir` into `out` (default WORK_DIR/curves.png); returns the path."""
    from sceneparse.visualize import _figure, _save_figure

    work_dir = Path(work_dir)
    records = read_log(work_dir)
    train = [r for r in records if "loss" in r]
    val = [r for r in records if r.get("mIoU") is not None]
    if not train:
        raise ConfigError(f"{work_dir / LOG_FILE}: no training records to plot (is this a work dir of "
                          "`sceneparse train`?)")
    fig = _figure(12, 3.6)
    loss_ax, lr_ax, miou_ax = fig.subplots(1, 3)
    iterations = [r["iteration"] for r in train]
    loss_ax.plot(iterations, [r["loss"] for r in train], label="total")
    if any("loss_aux" in r for r in train):
        loss_ax.plot(iterations, [r["loss_decode"] for r in train], label="decode", alpha=0.7)
        loss_ax.plot(iterations, [r.get("loss_aux") for r in train], label="aux", alpha=0.7)
    loss_ax.set(title="training loss", xlabel="iteration")
    loss_ax.legend()
    lr_ax.plot(iterations, [r["lr"] for r in train])
    lr_ax.set(title="learning rate", xlabel="iteration")
    if val:
        miou_ax.plot([r["iteration"] for r in val], [100 * r["mIoU"] for r in val], marker="o")
        best = max(val, key=lambda r: r["mIoU"])
        miou_ax.set(title=f"val mIoU (best {100 * best['mIoU']:.2f} at {best['iteration']})", xlabel="iteration",
                    ylabel="%")
    else:
        miou_ax.set(title="val mIoU (no validation yet)")
    for ax in (loss_ax, lr_ax, miou_ax):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(out) if out else work_dir / CURVES_FILE
    _save_figure(fig, path)
    return path
