"""Training data pipeline per core: sceneparse against mmsegmentation's own pipeline, in one run.

    .venv/bin/python benchmarks/data_loading.py                      # both recipes, 12 samples, 3 passes
    .venv/bin/python benchmarks/data_loading.py --n 24 --passes 5 --json loading.json

For the Cityscapes 512x1024 and ADE20K 512x512 recipes the script synthesises training images in the
datasets' real layouts and sizes (Cityscapes 2048x1024 PNGs, ADE20K JPEGs about 512 pixels high),
then times, on one core with one thread (OpenCV and torch), the seconds per sample of:

- sceneparse: `dataset[(seed, epoch, index)]`, everything a loader worker does: decode the image
  and label, encode the label, random rescale, crop with cat_max_ratio, flip, photometric
  distortion, pad to the crop (uint8; normalisation runs on the device, as mmsegmentation's);
- mmsegmentation 1.x: its dataset config's `train_pipeline` built by its own registry (decode,
  RandomResize, RandomCrop, RandomFlip, PhotoMetricDistortion, PackSegInputs), in a subprocess of
  the peers' Python (`.venv-peers`, `make peers`). Its SegDataPreProcessor (normalise, pad) runs on
  the GPU in training, so it is not in the baseline; its CPU time is printed beside it.

The ratio is mmsegmentation's seconds per sample over sceneparse's (higher is faster). The two
alternate sample by sample (mmsegmentation's side is a server process that times one sample per
request; its start-up is not timed), so load from other processes on a shared machine hits both
alike; the ratio is between the mean times, with the median of the per-sample ratios as a check. The CPU model and its vector flags are
printed first. A per-stage split says where sceneparse's time goes.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sceneparse.config import load_preset  # noqa: E402
from sceneparse.config.schema import DataConfig  # noqa: E402
from sceneparse.data.dataset import SegmentationDataset, build_dataset  # noqa: E402
from sceneparse.data.files import encode_label, read_image, read_label  # noqa: E402
from sceneparse.data.prepare import prepare  # noqa: E402
from sceneparse.data.synth import synthesize  # noqa: E402

# recipe -> (preset whose data section is timed, synthetic image height, mmsegmentation dataset config)
RECIPES = {
    "cityscapes 512x1024": ("pspnet_r50-d8_512x1024_40k_cityscapes", 1024, "cityscapes.py"),
    "ade20k 512x512": ("pspnet_r50-d8_512x512_80k_ade20k", 512, "ade20k.py"),
}
VECTOR_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_bf16")


def cpu_description() -> str:
    """The CPU model and the vector flags that decide OpenCV's and torch's kernels."""
    model, flags, numbers = platform.processor() or "unknown CPU", set(), {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and ":" in line:
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and ":" in line:
                flags = set(line.split(":", 1)[1].split())
            elif line.split(":")[0].strip() in ("cpu family", "model") and ":" in line:
                numbers.setdefault(line.split(":")[0].strip(), line.split(":", 1)[1].strip())
    except OSError:
        pass
    family = f" (family {numbers['cpu family']} model {numbers['model']})" if len(numbers) == 2 else ""
    present = [flag for flag in VECTOR_FLAGS if flag in flags]
    return f"{model}{family}; flags: {' '.join(present) or 'unknown'}"


def make_data(dataset: str, height: int, n: int, root: Path) -> Path:
    """Synthesise `n` training images of `dataset` (converting raw labels as a user would)."""
    out = root / dataset
    if not (out / ".done").exists():
        synthesize(dataset, out, n=n, size=height, seed=0, workers=None, progress=True)
        if dataset == "cityscapes":
            prepare(dataset, out, workers=None, progress=True)
        (out / ".done").touch()
    return out


def time_sample(dataset: SegmentationDataset, index: int, epoch: int) -> float:
    """Seconds for `dataset[(0, epoch, index)]` (what a loader worker does for one sample)."""
    start = time.perf_counter()
    dataset[(0, epoch, index % len(dataset))]
    return time.perf_counter() - start


def stage_split(dataset: SegmentationDataset, n: int) -> dict[str, float]:
    """Milliseconds per sample of each of sceneparse's stages."""
    transform = dataset.transform
    totals = dict.fromkeys(("decode image", "decode + encode label", "augment (uint8)", "pad + to tensors"), 0.0)
    for index in range(n):
        sample = dataset.samples[index % len(dataset)]
        t0 = time.perf_counter()
        image = read_image(sample.image)
        t1 = time.perf_counter()
        label = encode_label(read_label(sample.label), dataset.info.reduce_zero_label, dataset.info.ignore_index,
                             dataset.ignore_index)
        t2 = time.perf_counter()
        rng = np.random.default_rng([0, 99, index])
        image, label = transform.apply(image, label, transform.draw(label, rng))
        t3 = time.perf_counter()
        transform.finish(image, label)
        t4 = time.perf_counter()
        for stage, seconds in zip(totals, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            totals[stage] += seconds
    return {stage: 1000.0 * total / n for stage, total in totals.items()}


class MmsegPeer:
    """mmsegmentation's pipeline on the same files, served sample by sample by the peers' Python
    (benchmarks/mmseg_data_peer.py), so the two toolboxes can alternate sample by sample."""

    def __init__(self, python: str, config: str, dataset: SegmentationDataset, cfg: DataConfig, work: Path) -> None:
        samples = [{"image": str(s.image), "label": str(s.label), "reduce_zero_label": dataset.info.reduce_zero_label}
                   for s in dataset.samples]
        spec = work / f"{config}.json"
        spec.write_text(json.dumps({"config": config, "samples": samples, "mean": list(cfg.mean), "std": list(cfg.std)}))
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        self.process = subprocess.Popen([python, str(ROOT / "benchmarks" / "mmseg_data_peer.py"), str(spec)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True, env=env)
        self.info = self._answer()

    def _answer(self) -> dict:
        line = self.process.stdout.readline() if self.process.stdout else ""
        if not line:
            error = self.process.stderr.read()[-3000:] if self.process.stderr else ""
            raise SystemExit(f"mmsegmentation's side failed (is `make peers` built?):\n{error}")
        return json.loads(line)

    def time_sample(self, index: int) -> dict:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{index}\n")
        self.process.stdin.flush()
        return self._answer()

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        self.process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=12, help="samples per pass (default 12)")
    parser.add_argument("--passes", type=int, default=3, help="epochs of the samples (default 3)")
    parser.add_argument("--data", default="", help="keep the synthetic data here (default: a temporary folder)")
    parser.add_argument("--recipes", nargs="+", choices=list(RECIPES), default=list(RECIPES))
    parser.add_argument("--peers-python", default=str(ROOT / ".venv-peers" / "bin" / "python"),
                        help="the Python with mmsegmentation 1.x (default .venv-peers/bin/python)")
    parser.add_argument("--json", default="", help="also write the results to this JSON file")
    args = parser.parse_args()

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    print(f"CPU: {cpu_description()}")
    print(f"one core, one thread per side; torch {torch.__version__}, numpy {np.__version__}, OpenCV {cv2.__version__}; "
          f"{args.n} samples x {args.passes} passes per side")
    rows = []
    with tempfile.TemporaryDirectory() as temp:
        data_root = Path(args.data or temp)
        for recipe in args.recipes:
            preset, height, config = RECIPES[recipe]
            cfg = load_preset(preset).data
            cfg.root = str(make_data(cfg.dataset, height, args.n, data_root))
            dataset = build_dataset(cfg, cfg.train_split, train=True, check=False)
            peer = MmsegPeer(args.peers_python, config, dataset, cfg, Path(temp))
            for index in range(min(len(dataset), 2)):  # warm caches and lazy imports on both sides
                time_sample(dataset, index, epoch=1000)
                peer.time_sample(index)
            ours, theirs, preprocess = [], [], []
            for epoch in range(args.passes):  # alternate sample by sample: load from others hits both alike
                for index in range(args.n):
                    ours.append(time_sample(dataset, index % len(dataset), epoch))
                    answer = peer.time_sample(index % len(dataset))
                    theirs.append(answer["pipeline_s"])
                    preprocess.append(answer["preprocess_s"])
            peer.close()
            ours_s, mmseg_s, preprocess_s = sum(ours) / len(ours), sum(theirs) / len(theirs), statistics.median(preprocess)
            pair_ratio = statistics.median(t / o for t, o in zip(theirs, ours, strict=True))
            split = stage_split(dataset, min(args.n, 6))
            print(f"\n{recipe} ({preset}; mmseg {peer.info['mmseg']} configs/_base_/datasets/{config}, "
                  f"crop {peer.info['crop']})")
            print(f"  mmsegmentation pipeline     {1000 * mmseg_s:8.1f} ms/sample"
                  f"   (+ SegDataPreProcessor on the CPU {1000 * preprocess_s:.1f} ms)")
            print(f"  sceneparse worker (pad; normalise on the device) {1000 * ours_s:8.1f} ms/sample")
            print(f"  ratio: sceneparse {mmseg_s / ours_s:.2f}x mmsegmentation per core (mean times; median of "
                  f"the per-sample ratios {pair_ratio:.2f}x; {(mmseg_s + preprocess_s) / ours_s:.2f}x counting "
                  "mmseg's preprocessing)")
            print("  sceneparse stages: " + ", ".join(f"{stage} {ms:.1f} ms" for stage, ms in split.items()))
            rows.append({"recipe": recipe, "sceneparse_s": ours_s, "mmseg_s": mmseg_s, "pair_ratio": pair_ratio,
                         "mmseg_preprocess_s": preprocess_s, "ratio": mmseg_s / ours_s, "stages_ms": split})
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": cpu_description(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
