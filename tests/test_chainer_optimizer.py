"""ChainerCV's optimiser (examples/pspnet/train_multi.py): chainer's MomentumSGD, WeightDecay off BatchNorm.

train_multi.py:

    optimizer = chainermn.create_multi_node_optimizer(chainer.optimizers.MomentumSGD(args.lr, 0.9), comm)
    for param in model.params():
        if param.name not in ('beta', 'gamma'):
            param.update_rule.add_hook(chainer.optimizer.WeightDecay(1e-4))

chainer/optimizers/momentum_sgd.py, MomentumSGDRule:

    def init_state(self, param): ... self.state['v'] = xp.zeros_like(param.data)
    def update_core_cpu(self, param):
        v = self.state['v']
        v *= self.hyperparam.momentum
        v -= self.hyperparam.lr * grad
        param.data += v
    (GPU kernel: 'v = momentum * v - lr * grad; param += v;')

chainer/optimizer_hooks/weight_decay.py, WeightDecay (timing = 'pre': before the update rule):

    def __call__(self, rule, param):
        p, g = param.data, param.grad
        ... g += self.rate * p     (GPU kernel: 'g += decay * p')
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sceneparse.api import build_model
from sceneparse.config import load_preset
from sceneparse.config.loader import preset_names
from sceneparse.engine.chainer_sgd import ChainerMomentumSGD
from sceneparse.engine.optimizer import build_optimizer
from sceneparse.errors import ConfigError
from tests.test_train_resume import final_weights, make_voc, tiny_preset

CHAINERCV = sorted(n for n in preset_names() if load_preset(n).published.source == "chainercv")
SMALL = ["model.backbone.depth=18", "model.backbone.base_channels=8", "model.backbone.stem_channels=16",
         "model.decode_head.channels=16", "model.aux_head.channels=8"]


def _chainer_reference(p0: np.ndarray, grads: list[np.ndarray], lrs: list[float], momentum: float,
                       rate: float) -> np.ndarray:
    """The update of the sources quoted above, step by step, in float64."""
    p, v = p0.copy(), np.zeros_like(p0)
    for g, lr in zip(grads, lrs):
        g = g + rate * p  # WeightDecay hook: g += rate * p
        v = momentum * v - lr * g  # MomentumSGDRule: v *= momentum; v -= lr * grad
        p = p + v  # param.data += v
    return p


def test_updates_follow_chainers_momentum_sgd_under_a_changing_lr() -> None:
    rng = np.random.default_rng(0)
    start = [rng.normal(size=(3, 4)), rng.normal(size=(5,))]
    params = [nn.Parameter(torch.tensor(a)) for a in start]
    optimizer = ChainerMomentumSGD([{"params": [params[0]]}, {"params": [params[1]], "weight_decay": 0.0}],
                                   lr=0.1, momentum=0.9, weight_decay=1e-2)
    grads: list[list[np.ndarray]] = [[], []]
    lrs = [0.1 * (1 - i / 6) ** 0.9 for i in range(6)]  # poly, changing every step
    for lr in lrs:
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad()
        loss = (params[0] ** 3).sum() + (torch.sin(params[1]) * 2).sum()
        loss.backward()
        for i, p in enumerate(params):
            grads[i].append(p.grad.numpy().copy())
        optimizer.step()
    expected = [_chainer_reference(start[0], grads[0], lrs, 0.9, 1e-2),
                _chainer_reference(start[1], grads[1], lrs, 0.9, 0.0)]
    for p, e in zip(params, expected):
        np.testing.assert_allclose(p.detach().numpy(), e, rtol=1e-12, atol=1e-14)
    # torch's form (LR outside the velocity) lands elsewhere with the same gradients: the test can tell them apart
    q, v = start[1].copy(), np.zeros_like(start[1])
    for g, lr in zip(grads[1], lrs):
        v = 0.9 * v + g
        q = q - lr * v
    assert not np.allclose(q, expected[1], rtol=1e-6)


def test_heads_at_ten_times_the_lr_equal_gradient_scaling_after_weight_decay() -> None:
    """train_multi.py adds GradientScaling(10) (`g *= 10`) to the heads after WeightDecay: g = 10 (g + rate p)."""
    start = np.linspace(-1.0, 1.0, 7)
    param = nn.Parameter(torch.tensor(start))
    optimizer = ChainerMomentumSGD([param], lr=0.1, momentum=0.9, weight_decay=1e-4)
    lrs, p, v = [0.01, 0.008, 0.005], start.copy(), np.zeros_like(start)
    for lr in lrs:
        optimizer.param_groups[0]["lr"] = 10 * lr  # head_lr_mult = 10
        optimizer.zero_grad()
        (param ** 2).sum().backward()
        g = 2 * p  # the same gradient, by hand
        optimizer.step()
        g = (g + 1e-4 * p) * 10  # WeightDecay, then GradientScaling(10)
        v = 0.9 * v - lr * g
        p = p + v
    np.testing.assert_allclose(param.detach().numpy(), p, rtol=1e-12)


@pytest.mark.parametrize("name", CHAINERCV)
def test_chainercv_presets_decay_all_but_batchnorm_with_chainers_form(name: str) -> None:
    preset = load_preset(name, SMALL)
    model = build_model(preset)
    optimizer = build_optimizer(model, preset.train)
    assert isinstance(optimizer, ChainerMomentumSGD)
    decay = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    lr = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    assert len(decay) == sum(1 for p in model.parameters() if p.requires_grad)
    backbone = {id(p) for p in model.backbone.parameters()}
    n_bn = 0
    for module in model.modules():
        for p in module.parameters(recurse=False):
            is_bn = isinstance(module, nn.BatchNorm2d)  # chainer's gamma (weight) and beta (bias)
            n_bn += is_bn
            assert decay[id(p)] == (0.0 if is_bn else 1e-4), module
            assert lr[id(p)] == pytest.approx(0.01 if id(p) in backbone else 0.1)  # heads x10
    assert n_bn > 0 and optimizer.param_groups[0]["momentum"] == 0.9


@pytest.mark.parametrize("name", sorted(set(preset_names()) - set(CHAINERCV)))
def test_other_presets_keep_torch_sgd_with_decay_on_every_parameter(name: str) -> None:
    preset = load_preset(name)
    t = preset.train
    assert (t.momentum_form, t.norm_weight_decay) == ("pytorch", True)
    model = nn.Sequential()
    model.backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    model.head = nn.Sequential(nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))
    optimizer = build_optimizer(model, t)
    assert type(optimizer) is torch.optim.SGD
    assert [g["name"] for g in optimizer.param_groups] == ["backbone", "heads"]
    assert all(g["weight_decay"] == t.weight_decay for g in optimizer.param_groups)


def test_an_unknown_momentum_form_is_refused() -> None:
    with pytest.raises(ConfigError, match="train.momentum_form"):
        load_preset(CHAINERCV[0], ["train.momentum_form=keras"])


def test_chainer_form_resumes_bit_exact(tmp_path: Path) -> None:
    voc_root = make_voc(tmp_path / "voc", n=12)
    cfg = tiny_preset("train.max_iters=5", "train.checkpoint_interval=100", "train.eval_interval=100",
                      "train.momentum_form=chainer", "train.norm_weight_decay=false")
    from sceneparse.engine.trainer import TrainOptions, train

    train(cfg, TrainOptions(work_dir=str(tmp_path / "whole"), data_root=str(voc_root), progress=False))
    train(cfg, TrainOptions(work_dir=str(tmp_path / "split"), data_root=str(voc_root), stop_at=2, progress=False))
    resumed = train(cfg, TrainOptions(work_dir=str(tmp_path / "split"), data_root=str(voc_root), resume=True,
                                      progress=False))
    assert resumed.iteration == 5
    expected, got = final_weights(tmp_path / "whole"), final_weights(tmp_path / "split")
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)
