"""The typed configuration of a run: model, data, training, testing, and the published figures.

Presets and user files are TOML, read into these dataclasses by `sceneparse.config.loader`;
nothing is ever executed. Every field has a default so that a TOML table only names what differs.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class BackboneConfig:
    """A ResNet; `output_stride` decides which stages trade stride for dilation."""

    depth: int = 50  # 18, 34, 50, 101 or 152
    stem: str = "v1c"  # "b": 7x7 conv (torchvision); "v1c": 3x3 convs 32-32-64; "semseg": 3x3 convs 64-64-128
    stem_channels: int = 0  # 0: the stem's usual width (64, or 128 for "semseg")
    base_channels: int = 64  # width of layer1; later stages double it
    output_stride: int = 8  # 8, 16 or 32
    contract_dilation: bool = True  # first block of a dilated stage uses half the dilation (mmsegmentation)
    multi_grid: list[int] = field(default_factory=list)  # dilation multipliers for the blocks of layer4


@dataclass
class DecodeHeadConfig:
    """The decode head; which fields matter depends on the model (see `sceneparse.models.registry`)."""

    channels: int = 512
    dropout: float = 0.1
    pool_scales: list[int] = field(default_factory=lambda: [1, 2, 3, 6])  # PSPNet and UPerNet
    # Pyramid pooling windows: "adaptive" (mmsegmentation, sssegmentation) or "fixed" (the original Caffe
    # PSPNet: windows sized for `pool_input_size`, the feature size at its training crop).
    pool_mode: str = "adaptive"
    pool_input_size: list[int] = field(default_factory=list)
    # "fixed" windows at other sizes: Caffe counts the bins rounding up (True), ChainerCV's
    # average_pooling_2d rounding down (False); the same at the training size when it divides evenly.
    pool_ceil_mode: bool = True
    # PSANet
    psa_type: str = "bi-direction"  # "collect", "distribute" or "bi-direction"
    mask_size: list[int] = field(default_factory=lambda: [97, 97])
    compact: bool = False
    shrink_factor: int = 2
    normalization_factor: float = 1.0  # 0 means mask_h * mask_w
    psa_softmax: bool = True
    # padding of PSANet's 1x1 projection: 1 in mmsegmentation and sssegmentation, 0 in semseg (hszhao)
    psa_proj_padding: int = 1
    # UPerNet: which backbone stages feed the FPN (all four by default)
    in_index: list[int] = field(default_factory=lambda: [0, 1, 2, 3])


@dataclass
class AuxHeadConfig:
    """FCN auxiliary head on a backbone stage, used only for the training loss."""

    enabled: bool = True
    channels: int = 256  # mmsegmentation: 256 (64 for R-18); sssegmentation: 512
    in_index: int = 2  # backbone stage (0-based), i.e. layer3
    dropout: float = 0.1
    loss_weight: float = 0.4


@dataclass
class ModelConfig:
    name: str = "pspnet"  # a key of sceneparse.models.registry.MODELS
    num_classes: int = 19
    align_corners: bool = False
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    decode_head: DecodeHeadConfig = field(default_factory=DecodeHeadConfig)
    aux_head: AuxHeadConfig = field(default_factory=AuxHeadConfig)


@dataclass
class DataConfig:
    """Which dataset, where it is, and the training/test transforms of the published recipe."""

    dataset: str = "cityscapes"  # a key of sceneparse.data.registry.DATASETS, or "custom"
    root: str = ""  # dataset root; `--data-root` on the command line overrides it
    train_split: str = "train"
    val_split: str = "val"
    scale: list[int] = field(default_factory=lambda: [2048, 1024])  # (long, short) base scale, as mmseg's scale
    ratio_range: list[float] = field(default_factory=lambda: [0.5, 2.0])
    crop_size: list[int] = field(default_factory=lambda: [512, 1024])  # (height, width)
    cat_max_ratio: float = 0.75
    flip_prob: float = 0.5
    photometric: bool = True
    mean: list[float] = field(default_factory=lambda: [123.675, 116.28, 103.53])  # RGB, 0-255
    std: list[float] = field(default_factory=lambda: [58.395, 57.12, 57.375])
    ignore_index: int = 255
    reduce_zero_label: bool = False
    num_workers: int = 4
    custom_classes_file: str = ""  # for dataset = "custom": the TOML that names the classes
    # Whose definitions the training pipeline follows: "mmseg", "ssseg", "semseg" (hszhao) or "chainercv"; the
    # table of differences is in sceneparse/data/pipelines.py and docs/recipes.md ("Data pipeline").
    pipeline: str = "mmseg"


@dataclass
class TrainConfig:
    """The optimisation recipe. `batch_size` is the total over all processes."""

    max_iters: int = 0  # iteration-based schedule (mmsegmentation rows) ...
    max_epochs: int = 0  # ... or epoch-based (sssegmentation rows); exactly one is non-zero
    batch_size: int = 8
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_power: float = 0.9
    min_lr: float = 1e-4
    # "after_last": poly over max_iters (mmseg 0.x / mmcv, sssegmentation, semseg, ChainerCV); "at_last": over
    # max_iters - 1, the last iteration at min_lr (mmengine's PolyLR, mmsegmentation 1.x)
    poly_end: str = "after_last"
    warmup_iters: int = 0
    warmup_ratio: float = 1e-6
    head_lr_mult: float = 1.0  # every module after the backbone (semseg's index_split: 10)
    # Weight decay on the normalisation layers' weight and bias too (mmsegmentation, sssegmentation, semseg);
    # false: none on them (ChainerCV's WeightDecay hook skips BatchNorm's gamma and beta)
    norm_weight_decay: bool = True
    # "pytorch": v = m v + g, p -= lr v (torch's SGD); "chainer": v = m v - lr g, p += v (chainer's MomentumSGD:
    # the LR inside the velocity, which differs once the LR changes). sceneparse/engine/optimizer.py
    momentum_form: str = "pytorch"
    loss: str = "ce"  # "ce" or "ohem"
    # What a head's loss is divided by (docs/recipes.md): "all_pixels" (mmsegmentation, avg_non_ignore=False:
    # every pixel, ignored ones too) or "labelled" (sssegmentation, semseg, ChainerCV: the labelled pixels,
    # weighted by their class weights). Either is taken per GPU of the recipe: the global batch is split into
    # `recipe_gpus` groups of images as the recipe's GPUs held them, each group normalised (and OHEM-selected)
    # on its own, and the groups' losses averaged (what DDP's gradient average did); recipe_gpus = 1 is the
    # whole global batch at once.
    loss_average: str = "labelled"
    recipe_gpus: int = 1
    class_weights: list[float] = field(default_factory=list)
    ohem_thresh: float = 0.7
    ohem_min_kept: int = 100000
    amp: str = "none"  # "none", "bf16" or "fp16"
    channels_last: bool = False
    grad_clip: float = 0.0  # max global grad norm; 0 disables
    eval_interval: int = 4000  # iterations (or epochs for epoch-based runs) between validations
    checkpoint_interval: int = 4000
    keep_checkpoints: int = 3
    log_interval: int = 50
    seed: int = 0
    deterministic: bool = False
    # ImageNet backbone weights: a file, a URL, or a scheme name such as open-mmlab://resnet50_v1c or
    # torchvision://resnet50 (sceneparse.engine.pretrained); "" or "none": random initialisation
    pretrained: str = ""
    pretrained_format: str = "auto"  # "torchvision", "mmseg", "timm", "semseg" or "auto"
    pretrained_sha256: str = ""  # the file's SHA-256 (or its prefix) when `pretrained` is a URL or a scheme name
    # a whole segmentation checkpoint to start from (mmsegmentation's load_from), in any format the
    # converters read; a different class count re-initialises the classifiers
    load_from: str = ""
    accumulate: int = 1  # micro-batches per optimizer step (batch_size is one micro-batch); the LR steps per update
    ema: float = 0.0  # decay of an exponential moving average of the weights (0: off); validated and exported


SLIDE_STYLES = ("mmseg", "semseg")  # the values of TestConfig.slide_style


@dataclass
class TestConfig:
    mode: str = "whole"  # "whole" or "slide"
    crop_size: list[int] = field(default_factory=lambda: [512, 1024])  # slide window (height, width)
    stride: list[int] = field(default_factory=lambda: [341, 341])  # slide step (height, width)
    scales: list[float] = field(default_factory=lambda: [0.5, 0.75, 1.0, 1.25, 1.5, 1.75])  # for --tta
    flip: bool = True  # for --tta
    # slide mode: "mmseg" shrinks the window to a small image and averages logits; "semseg" (hszhao/semseg's
    # tool/test.py) pads a small image, centred, with the mean, runs every window with its mirror and
    # averages probabilities, resized to the output half-pixel (cv2 INTER_LINEAR)
    slide_style: str = "mmseg"


@dataclass
class PublishedConfig:
    """What the source table reports for this row; metadata only, never used by a run."""

    source: str = ""  # "mmsegmentation", "sssegmentation", "chainercv", ...
    table: str = ""  # the model-zoo page the row comes from
    source_config: str = ""  # the config name in the source library
    mIoU: float | None = None
    mIoU_ms_flip: float | None = None
    fps: float | None = None
    mem_gb: float | None = None
    train_data: str = ""
    test_data: str = ""
    weights_url: str = ""
    weights_format: str = ""  # "mmseg", "sssegmentation", "chainercv", "caffe", "semseg"
    sha256_prefix: str = ""


@dataclass
class Preset:
    """Everything a run needs. `name` is the preset's registry name."""

    name: str = ""
    description: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    test: TestConfig = field(default_factory=TestConfig)
    published: PublishedConfig = field(default_factory=PublishedConfig)
