"""A pickle reader that runs nothing: for training checkpoints that hold more than tensors.

mmengine's CheckpointHook (mmsegmentation 1.x) saves `message_hub` (HistoryBuffer objects with
numpy arrays), optimizer and scheduler state next to the weights, so `torch.load(weights_only=True)`
refuses the file. This module reads such a file without executing any of its code:

* torch's own tensor rebuild functions, torch dtypes / sizes / devices, `collections.OrderedDict`
  and plain builtin containers are the only real objects it builds;
* any other class or function the file names becomes an inert `Placeholder` (a fresh class named
  after it, in no module): calling it, `__new__`, `__setstate__`, item and attribute assignment
  only store the pickled data. The named module is never imported and no code of it runs;
* `getattr` is honoured on placeholders only (mmengine pickles `getattr(HistoryBuffer, "min")`);
* names whose only use in a pickle is to run code (`os`, `subprocess`, `builtins.eval`, `exec`,
  `__import__`, `sys`, `importlib`, `runpy`, ...) are refused: the file is rejected, not defused.

It is handed to `torch.load(..., pickle_module=restricted_pickle, weights_only=False)`, which is
torch's hook for the unpickler: torch keeps reading the zip container and storages itself.
"""
from __future__ import annotations

import collections
import io
import pickle
from typing import Any

import torch

UnpicklingError = pickle.UnpicklingError

# (module, name) -> the real object: torch's tensor rebuild functions and plain containers only
_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "bytearray"): bytearray,
    ("builtins", "complex"): complex,
    ("builtins", "slice"): slice,
    ("builtins", "object"): object,  # appears as copyreg's base-class argument
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
    ("torch.serialization", "_get_layout"): torch.serialization._get_layout,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch.storage", "UntypedStorage"): torch.storage.UntypedStorage,
    ("torch.storage", "TypedStorage"): torch.storage.TypedStorage,
}
# modules (and builtins) whose names in a pickle serve to run code: the whole file is refused
_REFUSED_MODULES = frozenset({
    "os", "posix", "nt", "subprocess", "sys", "importlib", "runpy", "pickle", "_pickle", "marshal", "shutil",
    "socket", "ctypes", "code", "codeop", "pty", "types", "functools", "operator", "io", "_io", "webbrowser",
    "pdb", "timeit", "platform", "multiprocessing", "signal", "tempfile", "pathlib", "asyncio", "threading",
    "inspect", "commands", "popen2", "pip", "setuptools", "distutils", "urllib", "http", "requests",
})


class Placeholder:
    """An object of a class (or the result of a function) the checkpoint names but sceneparse never runs.

    `qualified_name` says what it stands for; `args`, `state`, `items` and `attributes` hold the
    pickled data as it was, for reading only.
    """

    qualified_name = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> Placeholder:
        obj = object.__new__(cls)
        object.__setattr__(obj, "args", args)
        object.__setattr__(obj, "state", None)
        object.__setattr__(obj, "items", {})
        object.__setattr__(obj, "listed", [])
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # called by REDUCE / INST: nothing to run
        pass

    def __setstate__(self, state: Any) -> None:
        object.__setattr__(self, "state", state)

    def __setitem__(self, key: Any, value: Any) -> None:  # SETITEMS on a pickled dict subclass
        self.items[key] = value

    def append(self, value: Any) -> None:  # APPENDS on a pickled list subclass
        self.listed.append(value)

    def extend(self, values: Any) -> None:
        self.listed.extend(values)

    def __repr__(self) -> str:
        return f"<{self.qualified_name} (not loaded)>"


_PLACEHOLDERS: dict[str, type[Placeholder]] = {}


def placeholder_class(qualified_name: str) -> type[Placeholder]:
    """The inert stand-in for `qualified_name` (one class per name)."""
    if qualified_name not in _PLACEHOLDERS:
        short = qualified_name.rsplit(".", 1)[-1] or "Unknown"
        _PLACEHOLDERS[qualified_name] = type(short, (Placeholder,), {"qualified_name": qualified_name,
                                                                      "__module__": "<not loaded>"})
    return _PLACEHOLDERS[qualified_name]


def _placeholder_getattr(obj: Any, name: str) -> Any:
    """`getattr` for placeholders only: the attribute of a class never loaded is a placeholder too."""
    if isinstance(obj, type) and issubclass(obj, Placeholder):
        return placeholder_class(f"{obj.qualified_name}.{name}")
    if isinstance(obj, Placeholder):
        return placeholder_class(f"{type(obj).qualified_name}().{name}")
    raise UnpicklingError(f"refused: the file calls getattr on {type(obj).__name__} (only inert placeholders "
                          "are looked into)")


def _reconstruct_placeholder(cls: Any, *args: Any) -> Placeholder:
    """`copyreg._reconstructor` / `__newobj__` (how protocol 2 rebuilds plain objects), for placeholders only."""
    if isinstance(cls, type) and issubclass(cls, Placeholder):
        return cls()
    raise UnpicklingError(f"refused: the file rebuilds a {getattr(cls, '__name__', cls)!s} through copyreg")


# Python 2 spellings that protocol-2 pickles still use
_OLD_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


def _is_dtype(module: str, name: str) -> bool:
    # the module's own dict: `getattr(torch, name)` could import a lazily loaded torch submodule
    return module == "torch" and isinstance(vars(torch).get(name), torch.dtype)


class Unpickler(pickle.Unpickler):
    """`pickle.Unpickler` whose `find_class` gives real objects for torch's tensors only (see the module)."""

    def find_class(self, module: str, name: str) -> Any:
        module = _OLD_MODULES.get(module, module)
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if _is_dtype(module, name):
            return vars(torch)[name]
        if module == "builtins" and name == "getattr":
            return _placeholder_getattr
        if module == "copyreg" and name in ("_reconstructor", "__newobj__", "__newobj_ex__"):
            return _reconstruct_placeholder
        root = module.split(".", 1)[0]
        if root in _REFUSED_MODULES or root in ("builtins", "__builtin__") or name in ("eval", "exec", "system",
                                                                                      "__import__", "compile"):
            raise UnpicklingError(f"refused: the file calls {module}.{name}, which would run code")
        return placeholder_class(f"{module}.{name}")


def load(file: Any, **kwargs: Any) -> Any:
    """`pickle.load` through the restricted `Unpickler` (torch's legacy format reads headers with it)."""
    return Unpickler(file, **kwargs).load()


def loads(data: bytes, **kwargs: Any) -> Any:
    return load(io.BytesIO(data), **kwargs)
