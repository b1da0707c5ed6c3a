"""hszhao/semseg's training pipeline against its own code.

tests/fixtures/pipeline/semseg_train.npz was made by tools/fixtures/make_semseg_pipeline_fixtures.py,
which runs semseg's util/transform.py (tool/train.py's train_transform) with scripted random draws;
here our `data.pipeline = "semseg"` replays those draws on the same image and label.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sceneparse.config.schema import DataConfig
from sceneparse.data import pipelines as P

FIXTURE = Path(__file__).parent / "fixtures" / "pipeline" / "semseg_train.npz"


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as data:
        return dict(data)


@pytest.mark.parametrize("case", range(4))
def test_semseg_pipeline_gives_semsegs_tensors(reference: dict[str, np.ndarray], case: int) -> None:
    crop = [int(v) for v in reference["crop"]]
    cfg = DataConfig(pipeline="semseg", crop_size=crop, ratio_range=[0.5, 2.0], mean=list(reference["mean"]),
                     std=list(reference["std"]), ignore_index=255)
    transform = P.build_train_transform(cfg)
    scale, angle, blur, flip, top, left = reference[f"case{case}_draw"].tolist()
    draw = P.SemsegDraw(scale=scale, angle=None if np.isnan(angle) else angle, blur=bool(blur), flip=bool(flip),
                        top=int(top), left=int(left))
    out = transform.to_tensors(*transform.apply(reference["image"], reference["label"], draw))
    np.testing.assert_array_equal(out["label"].numpy(), reference[f"case{case}_label"])
    np.testing.assert_allclose(out["image"].numpy(), reference[f"case{case}_image"], rtol=0, atol=0)


def test_the_cases_cover_padding_rotation_and_no_rotation(reference: dict[str, np.ndarray]) -> None:
    """The fixture exercises what differs most between semseg and the others: mean padding, rotation."""
    draws = [reference[f"case{i}_draw"] for i in range(4)]
    assert any(np.isnan(d[1]) for d in draws) and any(not np.isnan(d[1]) for d in draws)
    assert any(d[0] * 37 < 40 for d in draws)  # the 37-pixel-high image scaled below the crop: padded
    assert (reference["case0_label"] == 255).any()
