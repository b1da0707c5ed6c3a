"""The quickstart's pipeline end to end, shrunk (a few images, a narrow model, 2 iterations).

The real quickstart (`make quickstart`) trains for minutes and must reach mIoU > 0.7; here only the
plumbing is checked: every step runs and writes what the final message points to.
"""
from __future__ import annotations

from pathlib import Path

from PIL import Image

from sceneparse.engine.quickstart import quickstart_preset, run_quickstart
from sceneparse.engine.run_log import read_log

SHRINK = ["model.backbone.base_channels=8", "model.backbone.stem_channels=8", "model.decode_head.channels=16",
          "model.aux_head.channels=8", "train.max_iters=2", "train.eval_interval=2", "train.batch_size=2",
          "data.num_workers=0"]


def test_quickstart_recipe_is_pspnet_r18_d8_on_voc() -> None:
    cfg = quickstart_preset()
    assert (cfg.model.name, cfg.model.backbone.depth, cfg.model.backbone.output_stride) == ("pspnet", 18, 8)
    assert cfg.data.dataset == "voc" and cfg.model.num_classes == 21 and cfg.train.pretrained == ""


def test_quickstart_runs_every_step(tmp_path: Path) -> None:
    result = run_quickstart(tmp_path / "qs", SHRINK, progress=False, images_per_split=4)
    files = result.files
    assert 0.0 <= result.miou <= 1.0
    assert (files["evaluation"] / "metrics.json").is_file()
    overlays = sorted(files["overlays"].glob("*.png"))
    assert len(overlays) == 4
    with Image.open(overlays[0]) as panel:  # image | ground truth | prediction, side by side
        assert panel.height == 128 and panel.width % 3 == 0
    assert Image.open(files["curves"]).format == "PNG"
    assert max(r["iteration"] for r in read_log(files["run"])) == 2
    # a second run resumes the finished training instead of starting over
    again = run_quickstart(tmp_path / "qs", SHRINK, progress=False, images_per_split=4)
    assert again.miou == result.miou
