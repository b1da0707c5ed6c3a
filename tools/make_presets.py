"""Write `sceneparse/presets/<table>.toml` from the published model-zoo tables in `docs/model_zoo/`.

Each row becomes a preset named as its table names the config, extending recipes from
`sceneparse/presets/recipes.toml` and carrying the published figures. Run it after editing a table:

    python tools/make_presets.py
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sceneparse.config.loader import dumps_toml  # noqa: E402
from sceneparse.engine.pretrained import IMAGENET_BACKBONES, imagenet_backbone_name  # noqa: E402

ZOO = ROOT / "docs" / "model_zoo"
OUT = ROOT / "sceneparse" / "presets"

MMSEG_SECTIONS = {  # section heading -> (recipe, dataset id in mmseg 1.x config names)
    "Cityscapes": ("mmseg_cityscapes_{crop}", "cityscapes"),
    "ADE20K": ("mmseg_ade20k_512x512", "ade20k"),
    "Pascal VOC 2012 + Aug": ("mmseg_voc12aug_512x512", "voc12aug"),
    "Pascal Context": ("mmseg_pascal_context_480x480", "pascal-context"),
    "Pascal Context 59": ("mmseg_pascal_context_59_480x480", "pascal-context-59"),
    "COCO-Stuff 10k": ("mmseg_coco_stuff10k_512x512", "coco-stuff10k"),
    "COCO-Stuff 164k": ("mmseg_coco_stuff164k_512x512", "coco-stuff164k"),
}
SSSEG_SECTIONS = {"PASCAL VOC": "voc", "ADE20k": "ade20k", "CityScapes": "cityscapes"}
DISPLAY = {"pspnet": "PSPNet", "psanet": "PSANet", "upernet": "UPerNet"}
SSSEG_RECIPES = {"voc": "ssseg_voc_512x512", "ade20k": "ssseg_ade20k_512x512", "cityscapes": "ssseg_cityscapes_512x1024"}


def number(cell: str) -> float | None:
    cell = cell.strip().rstrip("%")
    try:
        return float(cell)
    except ValueError:
        return None


def link(cell: str, label: str) -> str:
    m = re.search(r"\[" + label + r"\]\(([^)]+)\)", cell)
    return m.group(1) if m else ""


def table_rows(text: str) -> list[tuple[str, list[str]]]:
    """(section heading, cells) for each data row of each markdown table."""
    rows, section = [], ""
    for line in text.splitlines():
        heading = re.match(r"^#{2,4}\s+(.*)$", line)
        if heading:
            section = heading.group(1).strip()
            continue
        line = line.strip()
        if not line.startswith("|") or set(line) <= set("|-: "):
            continue
        cells = [c.strip() for c in line.replace("&#124;", "¦").replace("\\|", "¦").strip("|").split("|")]
        if cells[0] in ("Method", "Backbone", "Model", "Dataset") or set(cells[0]) <= set("-: "):
            continue
        rows.append((section, cells))
    return rows


def backbone_settings(backbone: str) -> tuple[int, str, int]:
    """'R-50-D8' / 'R-18b-D8' / 'R-101' -> (depth, stem, output stride)."""
    m = re.match(r"R-(\d+)(b?)(?:-D(\d+))?$", backbone)
    if not m:
        raise ValueError(f"unknown backbone cell {backbone!r}")
    return int(m.group(1)), "b" if m.group(2) else "v1c", int(m.group(3) or 32)


def sha_prefix(url: str) -> str:
    m = re.search(r"-([0-9a-f]{8})\.pth$", url)
    return m.group(1) if m else ""


def imagenet_backbone(source: str, depth: int, stem: str) -> dict[str, str]:
    """train.pretrained (the file's URL) and train.pretrained_sha256 of the row's ImageNet backbone."""
    entry = IMAGENET_BACKBONES[imagenet_backbone_name(source, depth, stem)]
    return {"pretrained": entry.url, "pretrained_sha256": entry.sha256_prefix}


def mmseg_1x_name(model: str, bb: str, crop: str, iters: int, dataset: str) -> str:
    per_gpu = 2 if dataset == "cityscapes" else 4
    return f"{model}_{bb}_4xb{per_gpu}-{iters // 1000}k_{dataset}-{crop}"


def mmseg_presets(path: Path, model: str) -> dict[str, dict]:
    presets: dict[str, dict] = {}
    by_config: dict[str, dict] = {}
    for section, cells in table_rows(path.read_text()):
        if section.startswith("Dark Zurich"):
            continue
        _, backbone, crop, iters, mem, fps, miou, ms, config_cell, download = cells[:10]
        config_url = link(config_cell, "config")
        name = Path(config_url).stem.removesuffix(".p")
        depth, stem, os_ = backbone_settings(backbone)
        recipe, dataset_1x = MMSEG_SECTIONS[section]
        recipe = recipe.format(crop=crop)
        iters_n = int(iters)
        bb_token = re.match(r"[a-z]+_(r\d+b?(?:-d\d+)?)_", name).group(1)
        extends = [f"mmseg_{model}", recipe]
        if model == "pspnet" and depth == 18:
            extends.append("mmseg_pspnet_r18_heads")
        if model == "psanet" and section == "ADE20K":
            extends.append("mmseg_psanet_ade20k_mask")
        weights = link(download, "model")
        row = {
            "extends": extends,
            "description": f"{DISPLAY[model]} {backbone} {section} {crop}, "
                           f"{iters_n // 1000}k iterations (mmsegmentation table)",
            "model": {"backbone": {"depth": depth, "stem": stem, "output_stride": os_}},
            "train": {"max_iters": iters_n, "eval_interval": iters_n // 10, "checkpoint_interval": iters_n // 10,
                      **imagenet_backbone("mmsegmentation", depth, stem)},
            "published": {
                "table": f"docs/model_zoo/{path.name}",
                "source_config": name if "4xb" in name else mmseg_1x_name(model, bb_token, crop, iters_n, dataset_1x),
                "mIoU": number(miou), "mIoU_ms_flip": number(ms), "fps": number(fps), "mem_gb": number(mem),
                "weights_url": weights, "sha256_prefix": sha_prefix(weights),
            },
        }
        presets[name] = row
        by_config[Path(weights).name] = row
    # Dark Zurich / Nighttime Driving: the Cityscapes models evaluated on night scenes
    for section, cells in table_rows(path.read_text()):
        if not section.startswith("Dark Zurich"):
            continue
        _, backbone, _, test_set, miou, config_cell, ckpt = cells[:7]
        name = Path(link(config_cell, "config")).stem
        if test_set.startswith("Cityscapes"):
            continue  # the Cityscapes row itself is already a preset
        weights = link(ckpt, "model")
        base = by_config[Path(weights).name]
        recipe = "mmseg_dark_zurich" if "Dark" in test_set else "mmseg_night_driving"
        depth, stem, os_ = backbone_settings(backbone)
        presets[name] = {
            "extends": [base["extends"][0], recipe],
            "description": f"{DISPLAY[model]} {backbone} trained on Cityscapes, evaluated on {test_set}",
            "model": base["model"],
            "train": base["train"],
            "published": {
                "table": f"docs/model_zoo/{path.name}", "source_config": name, "mIoU": number(miou),
                "weights_url": weights, "sha256_prefix": sha_prefix(weights),
            },
        }
    return presets


def ssseg_presets(path: Path, model: str) -> dict[str, dict]:
    presets: dict[str, dict] = {}
    for section, cells in table_rows(path.read_text()):
        dataset = SSSEG_SECTIONS[section]
        backbone, crop, schedule, _, miou = cells[:5]
        m = re.match(r"ResNet(\d+) \(OS=(\d+)", backbone) or re.match(r"R-(\d+)-D(\d+)", backbone)
        depth, os_ = int(m.group(1)), int(m.group(2))
        name = f"{model}_resnet{depth}os{os_}_{dataset}"
        weights = link(cells[5], "model") if len(cells) > 5 else ""
        presets[name] = {
            "extends": [f"ssseg_{model}", SSSEG_RECIPES[dataset]],
            "description": f"{DISPLAY[model]} ResNet-{depth} OS{os_} {section} {crop}, {schedule} (sssegmentation table)",
            "model": {"backbone": {"depth": depth, "output_stride": os_}},
            "train": imagenet_backbone("sssegmentation", depth, "v1c"),  # its resnetNconv3x3stem: the V1c file
            "published": {"table": f"docs/model_zoo/{path.name}", "source_config": name, "mIoU": number(miou),
                          "weights_url": weights},
        }
    return presets


def chainercv_presets() -> dict[str, dict]:
    table = "docs/model_zoo/chainercv_pspnet.md"
    converted = "https://chainercv-models.preferred.jp/pspnet_resnet101_cityscapes_converted_2018_05_22.npz"
    presets = {
        "chainercv_pspnet_resnet101_cityscapes_converted": {
            "extends": ["chainercv_pspnet", "chainercv_cityscapes_713"],
            "description": "PSPNet ResNet-101, the authors' Caffe weights converted by ChainerCV (single scale)",
            # ChainerCV pools with fixed windows: recipes chainercv_pspnet + chainercv_cityscapes_713
            "model": {"backbone": {"depth": 101}},
            "published": {"table": table, "source_config": "pspnet_resnet101 (converted)", "mIoU": 79.03,
                          "weights_url": converted},
        }
    }
    for dataset, recipe, results in (("cityscapes", "chainercv_cityscapes_713", {50: 73.99, 101: 76.01}),
                                     ("ade20k", "chainercv_ade20k_473", {50: 34.97, 101: 36.55})):
        for depth, miou in results.items():
            presets[f"chainercv_pspnet_resnet{depth}_{dataset}"] = {
                "extends": ["chainercv_pspnet", recipe],
                "description": f"PSPNet dilated ResNet-{depth} trained by ChainerCV's train_multi.py on {dataset}",
                "model": {"backbone": {"depth": depth}},
                "published": {"table": table, "source_config": f"pspnet_resnet{depth}", "mIoU": miou},
            }
    return presets


def write(name: str, presets: dict[str, dict], header: str) -> None:
    text = f"# {header}\n# Generated by tools/make_presets.py from docs/model_zoo/; edit the table, not this file.\n\n"
    text += dumps_toml({"presets": presets})
    (OUT / f"{name}.toml").write_text(text)
    print(f"{name}.toml: {len(presets)} presets")


def main() -> None:
    for model in ("pspnet", "psanet", "upernet"):
        src = ZOO / f"mmseg_{model}.md"
        if src.exists():
            write(f"mmseg_{model}", mmseg_presets(src, model), f"{model}: mmsegmentation model zoo")
        src = ZOO / f"ssseg_{model}.md"
        if src.exists():
            write(f"ssseg_{model}", ssseg_presets(src, model), f"{model}: sssegmentation-style table")
    write("chainercv_pspnet", chainercv_presets(), "PSPNet: ChainerCV example (converted and trained models)")


if __name__ == "__main__":
    main()
