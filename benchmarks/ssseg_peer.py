"""sssegmentation 1.7.0 as a peer on a CPU-only machine: its own networks, built by its own builder.

    .venv-peers/bin/python benchmarks/ssseg_peer.py      # parity of PSPNet, UPerNet, PSANet (R-50 OS8, ADE20K)

`import ssseg` pulls in torchvision (only its SAM-family segmentors, MaskFormer's criterion and its
environment report use it), whose PyPI wheel for this torch is a CUDA build that does not load
beside the CPU torch. `install_torchvision_stand_in` puts a stand-in there whose callables refuse
to run; the models compared here never call them. ssseg's dataset classes import pandas (for their
split lists) and its config parser dill: they are stood in too when missing, since no network
needs them. PSANet's `mmcv.ops.PSAMask` is mmcv's own CPU kernel, as in benchmarks/peers.py.

For each model the script builds ssseg's network from the model part of its published config
(`SSSEG_MODELS`, BatchNorm instead of SyncBatchNorm, no pretrained download), gives its norm layers
random statistics (so that a swapped norm layer would show), converts the state dict with
`sceneparse.convert.ssseg`, loads it strictly into sceneparse's network of the matching preset,
and prints the relative L2 between the two toolboxes' whole-image logits.
"""
from __future__ import annotations

import copy
import importlib.machinery
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/peers.py, benchmarks/mmcv_psamask.py

TOLERANCE = 1e-5

# What ssseg 1.7.0 imports from torchvision: module -> attributes.
TORCHVISION_NAMES: dict[str, tuple[str, ...]] = {
    "torchvision": ("_is_tracing",),
    "torchvision.transforms": ("Normalize", "Resize", "ToTensor"),
    "torchvision.transforms.functional": ("resize", "to_pil_image"),
    "torchvision.ops": ("batched_nms", "box_area"),
    "torchvision.ops.boxes": ("batched_nms", "box_area"),
}

# Imported by ssseg's data and config modules at start-up, called by no network.
DATA_ONLY_MODULES = {
    "pandas": "ssseg's dataset classes read their split lists with it",
    "dill": "ssseg's ConfigParser unpickles .pkl configs with it",
}


def _refusing(name: str, reason: str) -> Callable[..., Any]:
    """A callable named `name` that raises NotImplementedError, saying why it is not there."""

    def refuse(*args: object, **kwargs: object) -> Any:
        raise NotImplementedError(f"{name} is not in this stand-in: {reason}")

    refuse.__name__ = refuse.__qualname__ = name.rsplit(".", 1)[-1]
    return refuse


def _stand_in_module(name: str, package: bool) -> types.ModuleType:
    """An empty module with a spec, so that `importlib.util.find_spec(name)` works on it."""
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=package)
    if package:
        module.__path__ = []
    return module


def install_torchvision_stand_in() -> bool:
    """Put a stand-in `torchvision` in `sys.modules` unless a real one imports; True if it did.

    The PyPI torchvision wheel for this torch is a CUDA build, which does not load beside the CPU
    torch, and ssseg imports it at start-up for models that the benchmarks never build.
    """
    try:
        import torchvision  # noqa: F401
        return False
    except Exception:  # ImportError, or OSError / RuntimeError from a build that does not fit this torch
        for key in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
            del sys.modules[key]
    reason = "only ssseg's SAM-family models use it"
    modules = {name: _stand_in_module(name, package=name != "torchvision.ops.boxes") for name in TORCHVISION_NAMES}
    modules["torchvision"].__version__ = "0.0.0+stand-in"
    for name, attributes in TORCHVISION_NAMES.items():
        for attribute in attributes:
            setattr(modules[name], attribute, _refusing(f"{name}.{attribute}", reason))
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(modules[parent], child, modules[name])
    sys.modules.update(modules)
    return True


def install_data_module_stand_ins() -> list[str]:
    """Stand in for `DATA_ONLY_MODULES` that do not import (ssseg was installed with --no-deps).

    Returns the names stood in for. Any attribute of a stand-in is a callable that refuses to run.
    """
    stood_in = []
    for name, reason in DATA_ONLY_MODULES.items():
        try:
            __import__(name)
        except ImportError:
            module = _stand_in_module(name, package=False)

            def refuse_attribute(attribute: str, name: str = name, reason: str = reason) -> Any:
                if attribute.startswith("__"):
                    raise AttributeError(attribute)
                return _refusing(f"{name}.{attribute}", reason)

            module.__getattr__ = refuse_attribute  # type: ignore[method-assign]
            sys.modules[name] = module
            stood_in.append(name)
    return stood_in


def import_ssseg() -> types.ModuleType:
    """`ssseg.modules`, importable on this CPU-only machine (stand-ins, mmcv's compiled PSA mask)."""
    if "ssseg.modules" not in sys.modules:
        from peers import install_mmcv_ops_stand_in

        install_torchvision_stand_in()
        install_data_module_stand_ins()
        if "mmcv.ops" not in sys.modules:  # peers.py may have installed its own choice already
            install_mmcv_ops_stand_in("mmcv")
    import ssseg.modules

    return ssseg.modules


def _segmentor_cfg(segmentor: str, selected_indices: tuple[int, ...], head: dict[str, Any]) -> dict[str, Any]:
    """The model part of an ssseg 1.7.0 config for a ResNet-50 OS8 (3x3-stem, "V1c") ADE20K model.

    ssseg/configs/_base_/segmentors/<model>.py + ssseg/configs/<model>/<model>_resnet50os8_ade20k.py,
    with BatchNorm for SyncBatchNorm (one CPU process) and no pretrained download.
    """
    return {
        "type": segmentor,
        "num_classes": 150,
        "align_corners": False,
        "norm_cfg": {"type": "BatchNorm2d"},  # the config: {"type": "SyncBatchNorm"}
        "act_cfg": {"type": "ReLU", "inplace": True},
        "backbone": {
            "type": "ResNet", "depth": 50, "structure_type": "resnet50conv3x3stem",
            "pretrained": False,  # the config: True (ImageNet weights from a URL)
            "outstride": 8, "use_conv3x3_stem": True, "selected_indices": selected_indices,
        },
        "head": head,
        "auxiliary": {"in_channels": 1024, "out_channels": 512, "dropout": 0.1},
        "losses": {
            "loss_aux": {"type": "CrossEntropyLoss", "scale_factor": 0.4, "ignore_index": -100, "reduction": "mean"},
            "loss_cls": {"type": "CrossEntropyLoss", "scale_factor": 1.0, "ignore_index": -100, "reduction": "mean"},
        },
        "inference": {
            "forward": {"mode": "whole", "cropsize": None, "stride": None},
            "tta": {"multiscale": [1], "flip": False, "use_probs_before_resize": False},
            "evaluate": {"metric_list": ["iou", "miou"]},
        },
    }


# model -> ssseg SEGMENTOR_CFG (model keys only: no dataset, dataloader, scheduler or logging)
SSSEG_MODELS: dict[str, dict[str, Any]] = {
    "pspnet": _segmentor_cfg("PSPNet", (2, 3), {
        "in_channels": 2048, "feats_channels": 512, "pool_scales": [1, 2, 3, 6], "dropout": 0.1,
    }),
    "upernet": _segmentor_cfg("UPerNet", (0, 1, 2, 3), {
        "in_channels_list": [256, 512, 1024, 2048], "feats_channels": 512, "pool_scales": [1, 2, 3, 6],
        "dropout": 0.1,
    }),
    "psanet": _segmentor_cfg("PSANet", (2, 3), {
        "in_channels": 2048, "feats_channels": 512, "type": "bi-direction", "mask_size": (97, 97),
        "compact": False, "shrink_factor": 2, "normalization_factor": 1.0, "psa_softmax": True, "dropout": 0.1,
    }),
}

# model -> sceneparse preset of the same sssegmentation row
PRESETS = {name: f"{name}_resnet50os8_ade20k" for name in SSSEG_MODELS}


def build_ssseg(model_name: str, mode: str = "TEST") -> nn.Module:
    """ssseg's network for `model_name`, built by ssseg's own `BuildSegmentor` (eval mode for TEST)."""
    modules = import_ssseg()
    model = modules.BuildSegmentor(segmentor_cfg=copy.deepcopy(SSSEG_MODELS[model_name]), mode=mode)
    return model.eval() if mode == "TEST" else model


def ssseg_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Whole-image logits at the input size, as ssseg's test.py computes them.

    `inference` runs the forward in TEST mode on an `SSSegInputStructure`; test.py then resizes the
    logits bilinearly to the image size with the model's `align_corners`.
    """
    logits = model.inference(x)
    return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=model.align_corners)


def randomize_norm_statistics(model: nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm its own statistics and affine values (fresh ones are all alike)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                n = module.num_features
                module.running_mean.copy_((torch.rand(n, generator=generator) - 0.5) * 0.2)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_((torch.rand(n, generator=generator) - 0.5) * 0.2)


def sceneparse_twin(model_name: str, ssseg_model: nn.Module) -> nn.Module:
    """sceneparse's network of the matching preset holding ssseg's weights (through the converter)."""
    from sceneparse.api import build_model
    from sceneparse.config import load_preset
    from sceneparse.convert.common import load_state_strict
    from sceneparse.convert.ssseg import convert_ssseg

    cfg = load_preset(PRESETS[model_name])
    model = build_model(cfg)
    load_state_strict(model, convert_ssseg(ssseg_model.state_dict(), cfg.model.name), "sssegmentation model")
    return model.eval()


def relative_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def main() -> int:
    """Parity of sceneparse with ssseg on each model; nonzero exit if any relative L2 > TOLERANCE."""
    torch.manual_seed(0)
    import_ssseg()
    failed = []
    for model_name in SSSEG_MODELS:
        theirs = build_ssseg(model_name)
        randomize_norm_statistics(theirs)
        ours = sceneparse_twin(model_name, theirs)
        x = torch.randn(1, 3, 128, 128)
        with torch.inference_mode():
            difference = relative_l2(ours(x)["out"], ssseg_logits(theirs, x))
        print(f"{model_name} ({PRESETS[model_name]}): sceneparse vs sssegmentation logits, 1x3x128x128, "
              f"relative L2 {difference:.1e}", flush=True)
        if not difference <= TOLERANCE:
            failed.append(model_name)
    if failed:
        print(f"above {TOLERANCE:.0e}: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
