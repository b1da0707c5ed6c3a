"""mmcv's own CPU `PSAMask` kernel, compiled from the C++ sources that mmcv-lite ships, for benchmarks/peers.py.

mmcv-lite has no compiled ops and mmcv's full wheels are not built for this torch, but mmcv-lite
does ship the sources (`mmcv/ops/csrc`). This module compiles just the PSA mask from them, the
device-dispatch file and the CPU kernel, unchanged, with a few lines of pybind glue of our own
declaring the two functions exactly as mmcv's `pybind.cpp` does. mmcv's own Python wrapper
(`mmcv/ops/psa_mask.py`) is then loaded over it, so mmsegmentation's PSANet runs the op it runs
with a full mmcv build on a CPU.

    .venv-peers/bin/python benchmarks/mmcv_psamask.py      # compile once (about 40 s), then check

The build lives in `.venv-peers/mmcv_psamask_build`; later loads reuse it (ninja sees nothing to do).
"""
from __future__ import annotations

import importlib.util
import shutil
import sys
import types
from pathlib import Path

import torch
from torch import nn

# The two function declarations and bindings, as in mmcv/ops/csrc/pytorch/pybind.cpp.
GLUE = """\
#include <torch/extension.h>
#include "pytorch_cpp_helper.hpp"

void psamask_forward(const Tensor input, Tensor output, const int psa_type, const int num_,
                     const int h_feature, const int w_feature, const int h_mask, const int w_mask,
                     const int half_h_mask, const int half_w_mask);
void psamask_backward(Tensor grad_output, const Tensor grad_input, const int psa_type, const int num_,
                      const int h_feature, const int w_feature, const int h_mask, const int w_mask,
                      const int half_h_mask, const int half_w_mask);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("psamask_forward", &psamask_forward, "PSAMASK forward (CPU)", py::arg("input"),
        py::arg("output"), py::arg("psa_type"), py::arg("num_"), py::arg("h_feature"),
        py::arg("w_feature"), py::arg("h_mask"), py::arg("w_mask"), py::arg("half_h_mask"),
        py::arg("half_w_mask"));
  m.def("psamask_backward", &psamask_backward, "PSAMASK backward (CPU)", py::arg("grad_output"),
        py::arg("grad_input"), py::arg("psa_type"), py::arg("num_"), py::arg("h_feature"),
        py::arg("w_feature"), py::arg("h_mask"), py::arg("w_mask"), py::arg("half_h_mask"),
        py::arg("half_w_mask"));
}
"""


def mmcv_root() -> Path:
    """The installed mmcv package directory, found without importing `mmcv.ops` (which fails in mmcv-lite)."""
    spec = importlib.util.find_spec("mmcv")
    if spec is None or spec.origin is None:
        raise RuntimeError("mmcv is not installed here: run `make peers` (it builds .venv-peers)")
    return Path(spec.origin).parent


def build_directory() -> Path:
    return Path(sys.prefix) / "mmcv_psamask_build"


def load_extension(verbose: bool = False) -> types.ModuleType:
    """Compile (first time) and import mmcv's PSA mask kernel; returns the module with
    `psamask_forward` / `psamask_backward`, what mmcv's `_ext` has under those names."""
    from torch.utils.cpp_extension import load

    csrc = mmcv_root() / "ops" / "csrc"
    sources = {"psamask_dispatch.cpp": csrc / "pytorch" / "psamask.cpp",
               "psamask_cpu.cpp": csrc / "pytorch" / "cpu" / "psamask.cpp"}
    for source in sources.values():
        if not source.is_file():
            raise RuntimeError(f"{source} is missing: this mmcv does not ship its C++ sources")
    out = build_directory()
    out.mkdir(exist_ok=True)
    # Both mmcv files are named psamask.cpp; ninja needs distinct object names, so copy them.
    for name, source in sources.items():
        target = out / name
        if not target.exists() or target.read_bytes() != source.read_bytes():
            shutil.copyfile(source, target)
    glue = out / "bind.cpp"
    if not glue.exists() or glue.read_text() != GLUE:
        glue.write_text(GLUE)
    return load("mmcv_psamask", [str(glue)] + [str(out / name) for name in sources],
                extra_include_paths=[str(csrc / "common")], extra_cflags=["-O3"],
                build_directory=str(out), verbose=verbose)


def mmcv_psamask_class() -> type[nn.Module]:
    """mmcv's own `PSAMask` module class (mmcv/ops/psa_mask.py) running the compiled kernel.

    `mmcv.ops` itself must not be imported (mmcv-lite's fails); the wrapper file is loaded on its
    own, with `mmcv._ext` pointing at the kernel built here, which is where its `ext_loader` looks.
    """
    sys.modules["mmcv._ext"] = load_extension()
    path = mmcv_root() / "ops" / "psa_mask.py"
    if "mmcv.ops" not in sys.modules:  # the wrapper's `from ..utils import` needs a parent package
        package = types.ModuleType("mmcv.ops")
        package.__path__ = []
        sys.modules["mmcv.ops"] = package
    spec = importlib.util.spec_from_file_location("mmcv.ops.psa_mask", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.PSAMask


def main() -> int:
    """Compile, then check mmcv's kernel against sceneparse's mask on one random input per layout."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from sceneparse.models.psa_mask import psa_mask

    psamask = mmcv_psamask_class()
    x = torch.randn(2, 15 * 15, 8, 8)
    for psa_type in ("collect", "distribute"):
        theirs, ours = psamask(psa_type, (15, 15))(x), psa_mask(x, psa_type, (15, 15))
        difference = float((theirs - ours).abs().max())
        print(f"mmcv PSAMask {psa_type}: max |mmcv - sceneparse| = {difference:.1e}")
        if difference > 0:
            return 1
    print(f"built in {build_directory()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
