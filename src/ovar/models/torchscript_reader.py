"""Reading a TorchScript archive's tensors as data, without running any of its code.

A TorchScript archive (``torch.jit.save``, e.g. OpenAI's CLIP ``.pt`` files) is a zip::

    <name>/data.pkl       the module objects: a pickle whose tensors point into <name>/data/<key>
    <name>/data/<key>     raw storage bytes
    <name>/code/...       the TorchScript program, including each class's __setstate__
    <name>/constants.pkl  constants of the program

Loading it with ``torch.jit.load`` runs the ``__setstate__`` methods of the archive's own code,
so a crafted file can execute anything. Here ``data.pkl`` is read by a restricted unpickler that
only rebuilds tensors: every module class becomes an inert record of its pickled attributes, and
no other class or function can be reached. The program text in ``code/`` is only *read* for
each class's ``__parameters__`` / ``__buffers__`` lists (so the result equals the module's
``state_dict()``), and to refuse classes that restore themselves with their own code.
"""

from __future__ import annotations

import ast
import collections
import io
import pickle
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelError

# Storage classes a pickled tensor may name, and the element type each holds.
_STORAGE_DTYPES = {
    "DoubleStorage": torch.float64, "FloatStorage": torch.float32, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool, "ComplexFloatStorage": torch.complex64, "ComplexDoubleStorage": torch.complex128,
}
_CLASS_LINE = re.compile(r"^class\s+(\w+)\s*(?:\(\s*([\w.]*)\s*\))?\s*:")
_LIST_LINE = re.compile(r"^\s+(__parameters__|__buffers__)\s*=\s*(\[.*\])\s*$")
_SETSTATE_LINE = re.compile(r"^\s+def\s+__setstate__\s*\(")


class _StorageType:
    """What ``torch.FloatStorage`` and the like stand for here: just an element type."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


class ScriptObject:
    """Inert stand-in for an object of the archive (a module): its class name and pickled state.

    Unpickling calls ``__setstate__`` with what the archive stored; this one only keeps it,
    whereas ``torch.jit.load`` would run the archive's own ``__setstate__`` code.
    """

    qualified_name = ""

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _rebuild_tensor(storage: torch.Tensor, offset: int, size: tuple, stride: tuple,
                    requires_grad: bool = False, hooks: Any = None, metadata: Any = None) -> torch.Tensor:
    """A view of a storage (``torch._utils._rebuild_tensor_v2``'s arguments; hooks are ignored)."""
    if not isinstance(storage, torch.Tensor):
        raise ValueError("a tensor refers to something that is not a storage")
    return storage.as_strided(tuple(size), tuple(stride), int(offset))


def _rebuild_parameter(data: torch.Tensor, requires_grad: bool = False, hooks: Any = None) -> torch.Tensor:
    return data


class _DataOnlyUnpickler(pickle.Unpickler):
    """Rebuilds tensors and inert :class:`ScriptObject` records; refuses every other global.

    This is the safety boundary: ``find_class`` is the only way a pickle reaches code, and it
    returns nothing that can act (no archive-defined class, no arbitrary function).
    """

    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(io.BytesIO(data))
        self._archive = archive
        self._prefix = prefix
        self._storages: dict[str, torch.Tensor] = {}
        self._classes: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "__torch__" or module.startswith("__torch__."):
            qualified = f"{module}.{name}"
            if qualified not in self._classes:  # one inert subclass per archive class name
                self._classes[qualified] = type(name, (ScriptObject,), {"qualified_name": qualified})
            return self._classes[qualified]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _rebuild_parameter
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"the archive refers to '{module}.{name}', which is not read as data")

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise pickle.UnpicklingError(f"unknown storage reference {pid!r:.80}")
        _, kind, key, _location, numel = pid
        key = str(key)
        if key not in self._storages:
            self._storages[key] = self._read_storage(key, kind.dtype, int(numel))
        return self._storages[key]

    def _read_storage(self, key: str, dtype: torch.dtype, numel: int) -> torch.Tensor:
        member = f"{self._prefix}data/{key}"
        try:
            raw = self._archive.read(member)
        except KeyError:
            raise pickle.UnpicklingError(f"storage '{member}' is missing") from None
        size = numel * torch.empty((), dtype=dtype).element_size()
        if len(raw) < size:
            raise pickle.UnpicklingError(f"storage '{member}' holds {len(raw)} bytes, expected {size}")
        if size == 0:
            return torch.empty(0, dtype=dtype)
        return torch.frombuffer(bytearray(raw if len(raw) == size else raw[:size]), dtype=dtype)


def _archive_prefix(names: list[str]) -> str:
    pickles = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
        raise ModelError("not a TorchScript archive (no single '<name>/data.pkl')")
    return pickles[0][: -len("data.pkl")]


def _class_declarations(archive: zipfile.ZipFile, prefix: str) -> dict[str, dict[str, Any]]:
    """``{qualified class name: {"module": bool, "params": [...], "buffers": [...], "setstate": bool}}``,
    read line by line from the program text (nothing in it is evaluated but literal name lists)."""
    found: dict[str, dict[str, Any]] = {}
    code = f"{prefix}code/"
    for member in archive.namelist():
        if not (member.startswith(code) and member.endswith(".py")):
            continue
        module = member[len(code): -len(".py")].replace("/", ".")
        current: dict[str, Any] | None = None
        for line in archive.read(member).decode("utf-8", errors="replace").splitlines():
            match = _CLASS_LINE.match(line)
            if match:
                current = found.setdefault(f"{module}.{match.group(1)}",
                                           {"module": match.group(2) == "Module", "params": None,
                                            "buffers": None, "setstate": False})
                continue
            if current is None:
                continue
            listed = _LIST_LINE.match(line)
            if listed:
                names = ast.literal_eval(listed.group(2))
                current["params" if listed.group(1) == "__parameters__" else "buffers"] = [str(n) for n in names]
            elif _SETSTATE_LINE.match(line):
                current["setstate"] = True
    return found


def _collect(obj: ScriptObject, prefix: str, declarations: dict[str, dict[str, Any]],
             out: dict[str, torch.Tensor], path: Path, seen: set[int]) -> None:
    """Add ``obj``'s parameters and buffers, then its submodules', in ``state_dict()`` order."""
    if id(obj) in seen:  # a module shared under two names is listed once, as state_dict does
        return
    seen.add(id(obj))
    name = obj.qualified_name
    declared = declarations.get(name, {})
    where = prefix.rstrip(".") or "the top-level module"
    if declared.get("setstate") or not isinstance(getattr(obj, "state", None), dict):
        raise ModelError(f"{path}: TorchScript object '{name}' ({where}) restores itself with its own "
                         f"__setstate__ code, which ovar never runs; its weights cannot be read as data")
    state: dict = obj.state
    if declared.get("params") is not None and declared.get("buffers") is not None:
        tensor_names = [*declared["params"], *declared["buffers"]]
    else:  # no declaration found: every tensor attribute is taken as a weight
        tensor_names = [k for k, v in state.items() if isinstance(v, torch.Tensor)]
    for key in tensor_names:
        value = state.get(key)
        if isinstance(value, torch.Tensor):
            out[prefix + key] = value
    for key, value in state.items():
        # Submodules only: other script objects (declared without the Module base) hold no weights.
        if isinstance(value, ScriptObject) and declarations.get(value.qualified_name, {}).get("module", True):
            _collect(value, f"{prefix}{key}.", declarations, out, path, seen)


def read_torchscript(path: str | Path) -> dict[str, torch.Tensor]:
    """The parameters and buffers of a TorchScript archive by dotted name (as its module's
    ``state_dict()`` would give them), read without running any code of the archive."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            prefix = _archive_prefix(names)
            if f"{prefix}byteorder" in names:
                order = archive.read(f"{prefix}byteorder").decode().strip()
                if order != sys.byteorder:
                    raise ModelError(f"{path}: TorchScript archive written on a {order}-endian machine")
            declarations = _class_declarations(archive, prefix)
            root = _DataOnlyUnpickler(archive.read(f"{prefix}data.pkl"), archive, prefix).load()
    except ModelError:
        raise
    except Exception as exc:  # zipfile, pickle and torch raise many types for a damaged file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: cannot read TorchScript archive ({first})") from exc
    if not isinstance(root, ScriptObject):
        raise ModelError(f"{path}: TorchScript archive holds no module")
    out: dict[str, torch.Tensor] = {}
    _collect(root, "", declarations, out, path, set())
    return out
