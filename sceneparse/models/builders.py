"""Builders for the three architectures; each composes a backbone, a decode head and an aux head."""
from __future__ import annotations

from sceneparse.config.schema import ModelConfig
from sceneparse.models.fcn_head import FCNHead
from sceneparse.models.psa_head import PSAHead
from sceneparse.models.psp_head import PSPHead
from sceneparse.models.registry import register_model
from sceneparse.models.resnet import ResNet
from sceneparse.models.segmentor import Segmentor
from sceneparse.models.uper_head import UPerHead


def build_backbone(cfg: ModelConfig) -> ResNet:
    b = cfg.backbone
    return ResNet(depth=b.depth, stem=b.stem, stem_channels=b.stem_channels, base_channels=b.base_channels,
                  output_stride=b.output_stride, contract_dilation=b.contract_dilation, multi_grid=b.multi_grid)


def build_aux_head(cfg: ModelConfig, backbone: ResNet) -> FCNHead | None:
    a = cfg.aux_head
    if not a.enabled:
        return None
    return FCNHead(backbone.out_channels[a.in_index], a.channels, cfg.num_classes, a.dropout, a.in_index)


@register_model("pspnet")
def build_pspnet(cfg: ModelConfig) -> Segmentor:
    backbone = build_backbone(cfg)
    h = cfg.decode_head
    head = PSPHead(backbone.out_channels[-1], h.channels, cfg.num_classes, h.pool_scales, h.dropout,
                   cfg.align_corners, h.pool_mode, h.pool_input_size, h.pool_ceil_mode)
    return Segmentor(backbone, head, build_aux_head(cfg, backbone), cfg.num_classes, cfg.align_corners)


@register_model("psanet")
def build_psanet(cfg: ModelConfig) -> Segmentor:
    backbone = build_backbone(cfg)
    h = cfg.decode_head
    head = PSAHead(backbone.out_channels[-1], h.channels, cfg.num_classes, h.dropout, cfg.align_corners,
                   h.mask_size, h.psa_type, h.compact, h.shrink_factor, h.normalization_factor, h.psa_softmax,
                   h.psa_proj_padding)
    return Segmentor(backbone, head, build_aux_head(cfg, backbone), cfg.num_classes, cfg.align_corners)


@register_model("upernet")
def build_upernet(cfg: ModelConfig) -> Segmentor:
    backbone = build_backbone(cfg)
    h = cfg.decode_head
    head = UPerHead([backbone.out_channels[i] for i in h.in_index], h.channels, cfg.num_classes,
                    h.pool_scales, h.dropout, cfg.align_corners, h.in_index)
    return Segmentor(backbone, head, build_aux_head(cfg, backbone), cfg.num_classes, cfg.align_corners)
