"""What a run reports: a JSON-lines file in the work dir and, when installed, TensorBoard scalars.

`log.jsonl` holds one object per line: training records {"iteration", "epoch", "loss", "lr", ...}
and validation records {"iteration", "mIoU", "aAcc", "mAcc", "split": "val"}; `sceneparse plot`
draws them. On resume the records past the resumed checkpoint are dropped (the run repeats those
iterations), so the file describes one consistent run.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from sceneparse.weights import atomic_write

log = logging.getLogger(__name__)

LOG_FILE = "log.jsonl"


def read_log(work_dir: str | Path) -> list[dict[str, Any]]:
    """The records of a work dir's log (a torn last line, from a killed run, is skipped)."""
    path = Path(work_dir) / LOG_FILE
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def truncate_log(work_dir: str | Path, last_iteration: int) -> None:
    """Keep the records up to `last_iteration` (the checkpoint a run resumes from)."""
    path = Path(work_dir) / LOG_FILE
    if not path.is_file():
        return
    kept = [r for r in read_log(work_dir) if int(r.get("iteration", 0)) <= last_iteration]
    text = "".join(json.dumps(r) + "\n" for r in kept)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


class RunLog:
    """Appends records to log.jsonl and mirrors numbers to TensorBoard (rank 0 only makes one)."""

    def __init__(self, work_dir: str | Path, tensorboard: bool = True) -> None:
        self.path = Path(work_dir) / LOG_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")
        self._writer: Any = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                log.info("tensorboard is not installed: no TensorBoard scalars (pip install tensorboard)")
            else:
                self._writer = SummaryWriter(str(Path(work_dir) / "tensorboard"))

    def write(self, record: dict[str, Any], prefix: str = "train") -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._writer is not None:
            step = int(record["iteration"])
            for key, value in record.items():
                if key != "iteration" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._writer.add_scalar(f"{prefix}/{key}", value, step)

    def close(self) -> None:
        self._file.close()
        if self._writer is not None:
            self._writer.close()
