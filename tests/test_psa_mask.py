"""The vectorised PSA mask equals a plain loop, for odd and even maps and masks, and in the head."""
from __future__ import annotations

import pytest
import torch

from sceneparse.models import build_segmentor
from sceneparse.models.psa_mask import psa_mask, psa_mask_reference
from tests.conftest import tiny_config


@pytest.mark.parametrize("psa_type", ["collect", "distribute"])
@pytest.mark.parametrize(("h", "w", "mask_h", "mask_w"), [
    (5, 7, 9, 13),   # full coverage, odd masks
    (6, 4, 12, 8),   # even map, even mask
    (4, 6, 3, 5),    # mask smaller than the map: partial coverage
    (7, 7, 14, 14),  # even mask on an odd map
    (1, 1, 1, 1),
])
def test_psa_mask_equals_loop_reference(psa_type: str, h: int, w: int, mask_h: int, mask_w: int) -> None:
    x = torch.randn(2, mask_h * mask_w, h, w)
    assert torch.equal(psa_mask(x, psa_type, (mask_h, mask_w)), psa_mask_reference(x, psa_type, (mask_h, mask_w)))


def test_collect_is_transpose_of_distribute() -> None:
    x = torch.randn(1, 9 * 11, 5, 6)
    col = psa_mask(x, "collect", (9, 11)).reshape(1, 30, 30)
    dis = psa_mask(x, "distribute", (9, 11)).reshape(1, 30, 30)
    assert torch.equal(col, dis.transpose(1, 2))


def test_psa_mask_rejects_wrong_channel_count() -> None:
    with pytest.raises(ValueError, match="mask_h\\*mask_w"):
        psa_mask(torch.randn(1, 10, 3, 3), "collect", (3, 3))


def test_psa_mask_gradient_flows() -> None:
    x = torch.randn(1, 25, 4, 5, requires_grad=True)
    psa_mask(x, "distribute", (5, 5)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("psa_type", ["collect", "distribute", "bi-direction"])
def test_psa_head_types_build_and_run(psa_type: str) -> None:
    model = build_segmentor(tiny_config("psanet", psa_type=psa_type)).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 72, 88))["out"]
    assert out.shape == (1, 5, 72, 88) and torch.isfinite(out).all()


def test_compact_mask_needs_matching_size() -> None:
    model = build_segmentor(tiny_config("psanet", compact=True)).eval()  # mask 9x9 = 81 cells
    with torch.no_grad():
        # 144x144 -> feature 18x18 -> shrunk 9x9 = 81 positions: fits
        assert model(torch.randn(1, 3, 144, 144))["out"].shape == (1, 5, 144, 144)
        with pytest.raises(ValueError, match="compact"):
            model(torch.randn(1, 3, 96, 96))
