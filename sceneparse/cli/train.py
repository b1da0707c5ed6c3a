"""`sceneparse train PRESET --data-root DIR --work-dir DIR`: train a preset as its published recipe did.

One process: `sceneparse train ...`. Several GPUs or machines: `torchrun --nproc-per-node 4 -m
sceneparse train ...` (add `--nnodes/--rdzv-*` across machines); `train.batch_size` is the total over
all processes. `--resume` continues from the work dir's latest checkpoint, exactly.
"""
from __future__ import annotations

import argparse

from sceneparse.cli.model_source import PRESET_HELP, load_model_source
from sceneparse.cli.options import add_overrides, count, positive
from sceneparse.engine.trainer import TrainOptions, train

EPILOG = """examples:
  sceneparse train pspnet_r50-d8_512x1024_40k_cityscapes --data-root data/cityscapes --work-dir runs/psp \\
      --pretrained resnet50_v1c.pth
  torchrun --nproc-per-node 4 -m sceneparse train upernet_r50_4xb4-80k_ade20k-512x512 \\
      --data-root data/ade --work-dir runs/uper --set train.amp=bf16
  sceneparse train runs/psp/config.toml --work-dir runs/psp --resume     # after a stop or a crash
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train a preset (single process or torchrun), with exact resume",
        description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("preset", help=PRESET_HELP + "; a checkpoint's weights are not loaded (--load-from)")
    p.add_argument("--data-root", default="", help="dataset root (default: the preset's data.root)")
    p.add_argument("--work-dir", required=True, help="checkpoints, log.jsonl, config.toml and curves go here")
    p.add_argument("--resume", action="store_true", help="continue from the work dir's latest checkpoint")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (torchrun: each process's GPU)")
    p.add_argument("--pretrained", default="", metavar="SPEC",
                   help="ImageNet backbone: a file, a URL, a name such as open-mmlab://resnet50_v1c or "
                        "torchvision://resnet50, or none (random init); default: the preset's train.pretrained")
    p.add_argument("--load-from", default="", metavar="CKPT",
                   help="fine-tune from a whole segmentation checkpoint (sceneparse, mmseg, ssseg, semseg, "
                        "chainercv); another class count re-initialises the classifiers")
    p.add_argument("--workers", type=count, help="data loading workers per process (default: data.num_workers)")
    p.add_argument("--stop-at", type=positive, metavar="ITER",
                   help="save and stop after this iteration (the LR schedule still runs to the end on --resume)")
    p.add_argument("--no-validate", action="store_true", help="skip the periodic validation")
    add_overrides(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    preset = load_model_source(args.preset, args.set).preset
    options = TrainOptions(
        work_dir=args.work_dir,
        data_root=args.data_root,
        resume=args.resume,
        device=args.device,
        pretrained=args.pretrained,
        load_from=args.load_from,
        num_workers=args.workers,
        stop_at=args.stop_at,
        validate=not args.no_validate,
    )
    result = train(preset, options)
    if result.stopped_by in ("SIGTERM", "SIGINT", "signal"):
        return 128 + 15 if result.stopped_by == "SIGTERM" else 130
    if result.stopped_by == "stop_at":
        print(f"stopped at iteration {result.iteration} of {result.max_iters} (--stop-at); continue with: "
              f"sceneparse train {args.work_dir}/config.toml --work-dir {args.work_dir} --resume")
    return 0
