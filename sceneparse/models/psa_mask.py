"""The point-wise spatial attention mask of PSANet, in pure PyTorch (no compiled op).

For a feature map of `h x w` positions, the attention conv predicts `mask_h * mask_w` values per
position: one per cell of a window centred on it. `psa_mask` scatters them into an
`(h*w) x h x w` map over all position pairs, as mmcv's `PSAMask`:

- collect:    out[n, partner, y, x]   = in[n, cell, y, x]
- distribute: out[n, y*w + x, partner] = in[n, cell, y, x]

where cell (i, j) of position (y, x) has the partner (y + i - (mask_h-1)//2, x + j - (mask_w-1)//2);
cells whose partner is outside the map are dropped and unreached entries stay 0. The scatter is
one `index_select` with an index built from the sizes, so it traces, exports and runs on any device.
"""
from __future__ import annotations

import functools

import torch


def collect_index(h: int, w: int, mask_h: int, mask_w: int, device: torch.device | None = None) -> torch.Tensor:
    """(h*w, h, w) channel index into the mask input for the collect layout; `mask_h*mask_w` means "zero"."""
    half_h, half_w = (mask_h - 1) // 2, (mask_w - 1) // 2
    py = torch.arange(h, device=device).view(h, 1, 1, 1)  # partner row
    px = torch.arange(w, device=device).view(1, w, 1, 1)  # partner column
    y = torch.arange(h, device=device).view(1, 1, h, 1)
    x = torch.arange(w, device=device).view(1, 1, 1, w)
    i = py - y + half_h
    j = px - x + half_w
    inside = (i >= 0) & (i < mask_h) & (j >= 0) & (j < mask_w)
    index = torch.where(inside, i * mask_w + j, torch.full_like(i, mask_h * mask_w))
    return index.reshape(h * w, h, w)


def _source_index(h: int, w: int, mask_h: int, mask_w: int, psa_type: str, device: torch.device | None,
                  check_coverage: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Flat source of every output entry in the (n, cells*h*w) input, and where no cell reaches (or None).

    collect:    out[P, Q] = in[cell(P, Q), Q]  ->  source cell(P, Q) * h*w + Q
    distribute: out[Q, P] = the same value     ->  the transpose of the collect source
    so both layouts are one `index_select`, with no transposed copy of the output. With
    `check_coverage` (needs concrete values), a mask that reaches every entry returns None.
    """
    cell = collect_index(h, w, mask_h, mask_w, device).reshape(h * w, h * w)
    unreached = cell == mask_h * mask_w
    source = torch.where(unreached, torch.zeros_like(cell), cell) * (h * w) + torch.arange(h * w, device=device)
    if psa_type == "distribute":
        source, unreached = source.t(), unreached.t()
    if check_coverage and not bool(unreached.any()):
        return source.reshape(-1).contiguous(), None
    return source.reshape(-1).contiguous(), unreached.reshape(-1).contiguous()


_cached_source_index = functools.lru_cache(maxsize=16)(_source_index)


def _building_graph() -> bool:
    """True while tracing, exporting or compiling: indices must be built from the (symbolic) sizes."""
    return (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting()
            or torch.compiler.is_compiling())


def psa_mask(x: torch.Tensor, psa_type: str, mask_size: tuple[int, int] | list[int]) -> torch.Tensor:
    """(n, mask_h*mask_w, h, w) -> (n, h*w, h, w) attention over all positions; see the module docstring.

    One gather from the input into the output; the index depends only on the sizes and is cached
    in eager mode (built afresh while tracing or exporting, so dynamic sizes stay dynamic).
    """
    n, c, h, w = x.shape
    mask_h, mask_w = mask_size
    if c != mask_h * mask_w:
        raise ValueError(f"PSA mask input has {c} channels, expected mask_h*mask_w = {mask_h * mask_w}")
    if psa_type not in ("collect", "distribute"):
        raise ValueError(f"psa_type must be 'collect' or 'distribute', got {psa_type!r}")
    if _building_graph() or x.device.type == "meta":  # symbolic sizes or no values: nothing to cache or test
        source, unreached = _source_index(h, w, mask_h, mask_w, psa_type, x.device, check_coverage=False)
    else:
        source, unreached = _cached_source_index(h, w, mask_h, mask_w, psa_type, x.device)
    out = torch.index_select(x.reshape(n, c * h * w), 1, source)
    if unreached is not None:
        out = out.masked_fill(unreached, 0)
    return out.reshape(n, h * w, h, w)


def psa_mask_reference(x: torch.Tensor, psa_type: str, mask_size: tuple[int, int] | list[int]) -> torch.Tensor:
    """Loop over every position and cell: slow, obviously right; for tests."""
    n, _, h, w = x.shape
    mask_h, mask_w = mask_size
    half_h, half_w = (mask_h - 1) // 2, (mask_w - 1) // 2
    out = x.new_zeros(n, h * w, h, w)
    for y in range(h):
        for xx in range(w):
            for i in range(mask_h):
                for j in range(mask_w):
                    py, px = y + i - half_h, xx + j - half_w
                    if 0 <= py < h and 0 <= px < w:
                        value = x[:, i * mask_w + j, y, xx]
                        if psa_type == "collect":
                            out[:, py * w + px, y, xx] = value
                        else:
                            out[:, y * w + xx, py, px] = value
    return out
