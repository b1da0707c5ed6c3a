"""mmsegmentation's own training data pipeline, timed per sample on one core (the baseline side of
benchmarks/data_loading.py, which runs this file with the peers' Python, `.venv-peers/bin/python`).

    .venv-peers/bin/python benchmarks/mmseg_data_peer.py SPEC.json   # then sample indices on stdin

SPEC names mmsegmentation's dataset config (e.g. "ade20k.py" under mmseg's packaged
configs/_base_/datasets), the samples (image path, label path, reduce_zero_label) and the
normalisation settings. The pipeline is the config's `train_pipeline`, built by mmsegmentation's
registry exactly as its dataset builds it; a sample's input is the dict its dataset hands the
pipeline. After a "ready" line, each sample index read from stdin is run and answered with one JSON
line: seconds for the pipeline (what a loader worker does) and for SegDataPreProcessor's per-sample
work (BGR->RGB, normalise, pad: done on the GPU in mmsegmentation, timed here on the CPU for
reference). Serving sample by sample lets the caller alternate the two toolboxes sample by sample.
"""
from __future__ import annotations

import json
import sys
import time
import types
from pathlib import Path


def _stub_mmcv_ops() -> None:
    """mmcv-lite has no compiled ops; mmsegmentation imports `mmcv.ops` anyway. None is used here."""
    module = types.ModuleType("mmcv.ops")

    def missing(name: str):
        if name.startswith("__"):
            raise AttributeError(name)

        def unavailable(*args, **kwargs):
            raise NotImplementedError(f"mmcv.ops.{name} is not in mmcv-lite")

        return unavailable

    module.__getattr__ = missing
    sys.modules["mmcv.ops"] = module


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    import cv2
    import numpy as np
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    _stub_mmcv_ops()
    import mmseg
    from mmengine.config import Config
    from mmengine.dataset import Compose
    from mmseg.models.data_preprocessor import SegDataPreProcessor
    from mmseg.utils import register_all_modules

    register_all_modules()
    config_dir = Path(mmseg.__file__).parent / ".mim" / "configs" / "_base_" / "datasets"
    cfg = Config.fromfile(str(config_dir / spec["config"]))
    pipeline = Compose(cfg.train_pipeline)
    crop = tuple(cfg.crop_size)
    preprocessor = SegDataPreProcessor(mean=spec["mean"], std=spec["std"], bgr_to_rgb=True, pad_val=0,
                                       seg_pad_val=255, size=crop)
    np.random.seed(0)
    print(json.dumps({"ready": True, "mmseg": mmseg.__version__, "crop": list(crop)}), flush=True)
    for line in sys.stdin:  # one sample index a line: time that sample, answer on one line
        sample = spec["samples"][int(line)]
        start = time.perf_counter()
        packed = pipeline({"img_path": sample["image"], "seg_map_path": sample["label"],
                           "reduce_zero_label": sample["reduce_zero_label"], "seg_fields": [], "label_map": None})
        middle = time.perf_counter()
        preprocessor({"inputs": [packed["inputs"]], "data_samples": [packed["data_samples"]]}, training=True)
        end = time.perf_counter()
        print(json.dumps({"pipeline_s": middle - start, "preprocess_s": end - middle}), flush=True)


if __name__ == "__main__":
    main()
