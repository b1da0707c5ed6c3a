"""Map a per-file job over many files on several processes, with a progress bar.

Jobs are module-level functions of one argument (so they pickle); results come back in order.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def parallel_map(
    job: Callable[[T], R], items: Sequence[T], workers: int | None = None, desc: str = "", progress: bool | None = None
) -> list[R]:
    """[job(item) for item in items], on `workers` processes (in this one when workers <= 1).

    `progress=None` shows the bar only on a terminal.
    """
    workers = default_workers() if workers is None else workers
    disable = None if progress is None else not progress
    bar = tqdm(total=len(items), desc=desc, unit="file", disable=disable, leave=False)
    try:
        if workers <= 1 or len(items) < 2:
            results = []
            for item in items:
                results.append(job(item))
                bar.update()
            return results
        chunk = max(1, min(64, len(items) // (workers * 8)))
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = []
            for result in pool.map(job, items, chunksize=chunk):
                results.append(result)
                bar.update()
            return results
    finally:
        bar.close()
