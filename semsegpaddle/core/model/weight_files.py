"""Read weights files into ``{name: numpy array}`` without running code from the file.

Three formats, told apart by their content:

- ``.safetensors``: a JSON header and raw tensor data (read with :mod:`safetensors.numpy`).
- Paddle ``.pdparams``: one pickle (protocol 2 to 4) of a dict. ``paddle.save(layer.state_dict())``
  stores each tensor as a numpy array plus a ``"StructuredToParameterName@@"`` name table; a nested
  dict goes through Paddle's own reducer, which stores a tensor as the tuple ``(name, array)``.
  Files of Paddle 2.x (PaddleSeg's model zoo) are the same apart from the pickle protocol and the
  numpy 1.x module names.
- torch ``.pth``/``.pt``/``.bin``: a zip with ``<archive>/data.pkl``, whose tensors point through
  persistent ids at raw storages ``<archive>/data/<key>``; a tensor is a view (offset, size,
  stride) of its storage.

Pickles are read by an unpickler whose ``find_class`` answers only from an explicit allow-list:
numpy's array reconstruction, plain containers, and torch's rebuild functions and storage types
mapped to stand-ins here that build numpy arrays. Neither torch nor paddle is imported.
"""
from __future__ import annotations

import _compat_pickle
import collections
import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from semsegpaddle.core.common.errors import SemsegError

SUFFIXES = (".safetensors", ".pdparams", ".pth", ".pt", ".bin")
#: wrappers around a state dict unwrapped as ``read_checkpoint`` does, in this order
_WRAPPER_KEYS = ("state_dict", "model", "state_dict_ema")
#: Paddle's bookkeeping entries, never tensors
_PADDLE_NAME_TABLE = "StructuredToParameterName@@"
_PADDLE_SPLIT_TABLE = "UnpackBigParamInfor@@"  # Paddle's spelling: big arrays saved in slices
#: the first pickle of a pre-1.6 (non-zip) torch file is this number
_LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C
_NUMERIC_KINDS = "biufc"


class _Refused(SemsegError):
    """A pickle asked for more than tensors; the message says what ("it asks to run os.system"),
    the reader adds the file name."""


# ---------------------------------------------------------------- objects a pickle may reach

class _Sealed:
    """Base of the objects the allow-list hands out: a pickle's BUILD cannot change them (they
    are shared by every read)."""

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        raise _Refused(f"it asks to change the reader's own {type(self).__name__.lstrip('_')} object")


class _StandIn(_Sealed):
    """A function offered to pickles in place of the global they name."""

    __slots__ = ("function",)

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function

    def __call__(self, *args: Any) -> Any:
        return self.function(*args)


class _ClassMarker(_Sealed):
    """A class named in a pickle only as an argument (``numpy.ndarray``, ``torch.Tensor``)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, *args: Any) -> Any:
        raise _Refused(f"it asks to construct {self.name} directly")


_NDARRAY = _ClassMarker("numpy.ndarray")


# ---------------------------------------------------------------- numpy and builtins stand-ins

def _numpy_reconstruct(cls: Any, shape: Any, dtype_code: Any) -> np.ndarray:
    """An empty ndarray that the pickle's BUILD fills with ``ndarray.__setstate__``."""
    if cls is not _NDARRAY or not isinstance(dtype_code, (bytes, str)):
        raise _Refused("it asks numpy's _reconstruct for something other than an ndarray")
    return np.ndarray.__new__(np.ndarray, shape, dtype_code)


def _numpy_dtype(spec: Any, align: Any = False, copy: Any = False, *_: Any) -> np.dtype:
    """``numpy.dtype(spec)``, always a private copy: the pickle's BUILD may then set its state
    without touching numpy's shared dtype objects."""
    if not isinstance(spec, str):
        raise _Refused("it asks for numpy.dtype of something other than a type code")
    return np.dtype(spec, bool(align), True)


def _numpy_frombuffer(buffer: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
    """numpy's protocol-5 array form: raw bytes, dtype, shape, memory order."""
    dtype = np.dtype(dtype)
    if dtype.kind not in _NUMERIC_KINDS:
        raise _Refused(f"it asks for a numpy array of dtype {dtype}")
    return np.frombuffer(bytes(buffer), dtype=dtype).reshape(shape, order=order).copy()


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    """A numpy scalar of a numeric dtype from its raw bytes (Python 2 pickles give latin-1 text)."""
    dtype = np.dtype(dtype)
    if dtype.kind not in _NUMERIC_KINDS:
        raise _Refused(f"it asks for a numpy scalar of dtype {dtype}")
    if isinstance(data, str):
        data = data.encode("latin1")
    return np.frombuffer(data, dtype=dtype, count=1)[0].copy()


def _codecs_encode(text: Any, encoding: str = "utf-8") -> bytes:
    """How protocol-2 pickles spell ``bytes``: ``_codecs.encode(text, 'latin1')``."""
    if not isinstance(text, str) or not isinstance(encoding, str) \
            or encoding.replace("-", "").lower() != "latin1":
        raise _Refused("it asks to run _codecs.encode other than text to latin-1 bytes")
    return text.encode("latin1")


def _empty_bytes(*args: Any) -> bytes:
    """How protocol-2 pickles spell ``b''``: ``bytes()``."""
    if args:
        raise _Refused("it asks to run builtins.bytes with arguments")
    return b""


def _paddle_dense_tensor(expression: Any, namespace: Any = None, *_: Any) -> np.ndarray:
    """Paddle reduces a DenseTensor to ``eval('data', {'data': array})``; only that exact form
    is accepted and nothing is evaluated."""
    if expression == "data" and isinstance(namespace, dict) and isinstance(namespace.get("data"), np.ndarray):
        return namespace["data"]
    raise _Refused("it asks to run builtins.eval")


_BASE_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "dict"): dict,
    ("builtins", "list"): list,
    ("builtins", "tuple"): tuple,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "complex"): complex,
    ("builtins", "bytearray"): bytearray,
    ("builtins", "bytes"): _StandIn(_empty_bytes),
    ("builtins", "eval"): _StandIn(_paddle_dense_tensor),
    ("_codecs", "encode"): _StandIn(_codecs_encode),
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _StandIn(_numpy_dtype),
}
for _core in ("numpy.core", "numpy._core"):  # numpy 1.x and 2.x module names
    _BASE_GLOBALS[(f"{_core}.multiarray", "_reconstruct")] = _StandIn(_numpy_reconstruct)
    _BASE_GLOBALS[(f"{_core}.multiarray", "scalar")] = _StandIn(_numpy_scalar)
    _BASE_GLOBALS[(f"{_core}.numeric", "_frombuffer")] = _StandIn(_numpy_frombuffer)


# ---------------------------------------------------------------- torch stand-ins

class _TorchDType(_Sealed):
    """A torch dtype named in a pickle (``torch.float16``), as its numpy equivalent."""

    __slots__ = ("name", "numpy")

    def __init__(self, name: str, numpy_dtype: str) -> None:
        self.name, self.numpy = name, np.dtype(numpy_dtype)

    def stored(self, big_endian: bool) -> np.dtype:
        """The numpy dtype of the stored bytes (torch records the writer's byte order)."""
        return self.numpy.newbyteorder(">") if big_endian else self.numpy


class _StorageType(_Sealed):
    """A torch storage class named in a pickle (``torch.HalfStorage``); ``dtype`` None = untyped."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: _TorchDType | None) -> None:
        self.name, self.dtype = name, dtype


class _Storage(_Sealed):
    """A storage's raw bytes read from the zip, with the dtype its storage type declares."""

    __slots__ = ("data", "dtype", "big_endian")

    def __init__(self, data: np.ndarray, dtype: _TorchDType | None, big_endian: bool) -> None:
        self.data, self.dtype, self.big_endian = data, dtype, big_endian


# name -> numpy dtype; bfloat16 is read as uint16 bits and widened to float32
_TORCH_DTYPES = {
    "float32": "<f4", "float64": "<f8", "float16": "<f2", "bfloat16": "<u2",
    "int64": "<i8", "int32": "<i4", "int16": "<i2", "int8": "i1", "uint8": "u1", "bool": "?",
    "uint16": "<u2", "uint32": "<u4", "uint64": "<u8", "complex64": "<c8", "complex128": "<c16",
}
_STORAGE_DTYPES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64", "ComplexDoubleStorage": "complex128",
}
_DTYPE_OBJECTS = {name: _TorchDType(name, code) for name, code in _TORCH_DTYPES.items()}


def _tensor_from_storage(storage: Any, offset: Any, size: Any, stride: Any,
                         dtype: _TorchDType | None, metadata: Any) -> np.ndarray:
    """The view (offset, size, stride; in elements) of ``storage``, copied to a contiguous array."""
    if not isinstance(storage, _Storage) or dtype is None:
        raise _Refused("it asks for a tensor rebuilt from something other than a stored typed storage")
    shape, strides = tuple(size), tuple(stride)
    if not all(isinstance(v, int) and v >= 0 for v in (offset, *shape, *strides)) or len(shape) != len(strides):
        raise SemsegError(f"tensor with invalid layout: offset {offset}, size {shape}, stride {strides}")
    item = dtype.numpy.itemsize
    if storage.data.size % item:
        raise SemsegError(f"storage of {storage.data.size} bytes does not hold whole {dtype.name} elements")
    flat = storage.data.view(dtype.stored(storage.big_endian))
    if 0 in shape:
        values = np.empty(shape, dtype=dtype.numpy)
    else:
        last = offset + sum((n - 1) * s for n, s in zip(shape, strides))
        if last >= flat.size:
            raise SemsegError(f"tensor view (offset {offset}, size {shape}, stride {strides}) "
                              f"reaches past its storage of {flat.size} elements")
        view = np.lib.stride_tricks.as_strided(flat[offset:], shape=shape,
                                               strides=tuple(s * item for s in strides), writeable=False)
        values = np.array(view, dtype=dtype.numpy, order="C")
    if dtype.name == "bfloat16":
        values = (values.astype(np.uint32) << 16).view(np.float32)
    if metadata and metadata.get("neg"):
        values = -values
    if metadata and metadata.get("conj"):
        values = np.conj(values)
    return values


def _rebuild_tensor_v2(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                       backward_hooks: Any = None, metadata: Any = None) -> np.ndarray:
    """Stand-in for ``torch._utils._rebuild_tensor_v2``: the dtype is the storage type's."""
    dtype = storage.dtype if isinstance(storage, _Storage) else None
    return _tensor_from_storage(storage, offset, size, stride, dtype, metadata)


def _rebuild_tensor_v3(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any,
                       backward_hooks: Any, dtype: Any, metadata: Any = None) -> np.ndarray:
    """Stand-in for ``torch._utils._rebuild_tensor_v3``: an untyped storage and an explicit dtype."""
    if not isinstance(dtype, _TorchDType):
        raise _Refused("it asks to run _rebuild_tensor_v3 without a torch dtype")
    return _tensor_from_storage(storage, offset, size, stride, dtype, metadata)


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None,
                       state: Any = None) -> np.ndarray:
    """Stand-in for ``torch._utils._rebuild_parameter[_with_state]``: the parameter's data."""
    if not isinstance(data, np.ndarray):
        raise _Refused("it asks for a parameter whose data is not a tensor")
    return data


def _rebuild_from_type_v2(func: Any, new_type: Any, args: Any, state: Any) -> np.ndarray:
    """Stand-in for ``torch._tensor._rebuild_from_type_v2`` (a tensor carrying Python attributes):
    only plain tensors and parameters, built by one of the stand-ins here."""
    rebuilders = (_rebuild_tensor_v2, _rebuild_tensor_v3, _rebuild_parameter)
    if not (isinstance(func, _StandIn) and func.function in rebuilders) or new_type not in _TENSOR_CLASSES:
        raise _Refused("it asks to run torch._tensor._rebuild_from_type_v2 for a tensor subclass")
    return func(*args)


_TENSOR_CLASSES = (_ClassMarker("torch.Tensor"), _ClassMarker("torch.nn.Parameter"))
_TORCH_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _StandIn(_rebuild_tensor_v2),
    ("torch._utils", "_rebuild_tensor_v3"): _StandIn(_rebuild_tensor_v3),
    ("torch._utils", "_rebuild_parameter"): _StandIn(_rebuild_parameter),
    ("torch._utils", "_rebuild_parameter_with_state"): _StandIn(_rebuild_parameter),
    ("torch._tensor", "_rebuild_from_type_v2"): _StandIn(_rebuild_from_type_v2),
    ("torch", "Tensor"): _TENSOR_CLASSES[0],
    ("torch.nn.parameter", "Parameter"): _TENSOR_CLASSES[1],
    ("torch.storage", "UntypedStorage"): _StorageType("UntypedStorage", None),
    ("torch", "UntypedStorage"): _StorageType("UntypedStorage", None),
    **{("torch", name): _StorageType(name, _DTYPE_OBJECTS[dtype]) for name, dtype in _STORAGE_DTYPES.items()},
    **{("torch", name): dtype for name, dtype in _DTYPE_OBJECTS.items()},
}


# ---------------------------------------------------------------- the restricted unpickler

class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves globals only from ``allowed`` and reads persistent ids
    (torch storages) only through ``storage_loader``."""

    def __init__(self, file: Any, allowed: Mapping[tuple[str, str], Any],
                 storage_loader: Callable[[Any], Any] | None = None) -> None:
        super().__init__(file, encoding="latin1")
        self._allowed = allowed
        self._storage_loader = storage_loader

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names (``__builtin__``, ``copy_reg``), as the default find_class maps them
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise _Refused(f"it asks to run {module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        if self._storage_loader is None:
            raise _Refused("it asks for external data (a persistent id)")
        return self._storage_loader(pid)


def _unpickle(path: Path, file: Any, allowed: Mapping[tuple[str, str], Any],
              storage_loader: Callable[[Any], Any] | None = None) -> Any:
    """Run the restricted unpickler; every failure becomes a one-line SemsegError naming ``path``."""
    try:
        return _RestrictedUnpickler(file, allowed, storage_loader).load()
    except _Refused as refused:
        raise SemsegError(f"{path}: refused to load: {refused} (only tensors are read)") from None
    except SemsegError as error:
        raise SemsegError(f"{path}: {error}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, OverflowError, MemoryError, UnicodeDecodeError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SemsegError(f"{path}: truncated or corrupt pickle ({detail})") from None


# ---------------------------------------------------------------- the formats

def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    try:
        state = dict(load_file(str(path)))
    except TypeError as exc:  # numpy has no bfloat16: widen those to float32 ourselves
        if "bfloat16" not in str(exc):
            raise SemsegError(f"{path}: not a readable safetensors file ({exc})") from None
    except Exception as exc:
        raise SemsegError(f"{path}: not a readable safetensors file ({str(exc).splitlines()[0]})") from None
    else:
        # with ml_dtypes installed (onnxruntime's quantization brings it) safetensors returns bfloat16
        # arrays numpy can hold; widen them too, exactly as the fallback does
        return {key: value.astype(np.float32) if value.dtype.name == "bfloat16" else value
                for key, value in state.items()}
    return _read_safetensors_widening_bf16(path)


_SAFETENSORS_DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
    "I8": "i1", "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?",
}


def _read_safetensors_widening_bf16(path: Path) -> dict[str, np.ndarray]:
    """The safetensors layout (u64 header size, JSON header, data), read with numpy; BF16 tensors
    become float32 (numpy cannot hold bfloat16)."""
    raw = np.fromfile(path, dtype=np.uint8)
    size = int(raw[:8].view("<u8")[0])
    try:
        header = json.loads(raw[8:8 + size].tobytes())
    except ValueError as exc:
        raise SemsegError(f"{path}: not a readable safetensors file (header: {exc})") from None
    data = raw[8 + size:]
    out: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in _SAFETENSORS_DTYPES:
            raise SemsegError(f"{path}: tensor '{name}' has dtype {info['dtype']}, which cannot be read")
        begin, end = info["data_offsets"]
        if not 0 <= begin <= end <= data.size:
            raise SemsegError(f"{path}: tensor '{name}' lies outside the file (truncated?)")
        values = data[begin:end].view(_SAFETENSORS_DTYPES[info["dtype"]]).reshape(info["shape"])
        if info["dtype"] == "BF16":
            values = (values.astype(np.uint32) << 16).view(np.float32)
        out[name] = np.array(values, dtype=values.dtype.newbyteorder("="))
    return out


def _read_pickle(path: Path) -> Any:
    """A single pickle of arrays and containers (Paddle's format)."""
    with open(path, "rb") as file:
        obj = _unpickle(path, file, _BASE_GLOBALS)
    if type(obj) is int and obj == _LEGACY_TORCH_MAGIC:
        raise SemsegError(
            f"{path}: a legacy (non-zip) torch checkpoint, which is not read; re-save it in the zip "
            f"format with torch >= 1.6: torch.save(torch.load(path, map_location='cpu'), path)")
    return obj


def _zip_prefix(path: Path, archive: zipfile.ZipFile) -> str:
    pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
        raise SemsegError(f"{path}: a zip file but not a torch checkpoint (expected one <archive>/data.pkl, "
                          f"found {len(pickles)})")
    return pickles[0][: -len("data.pkl")]


def _read_torch_zip(path: Path) -> Any:
    """A torch zip checkpoint: ``data.pkl`` with storages loaded from ``data/<key>`` records."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise SemsegError(f"{path}: truncated or corrupt zip archive ({exc})") from None
    with archive:
        prefix = _zip_prefix(path, archive)
        big_endian = (prefix + "byteorder" in archive.namelist()
                      and archive.read(prefix + "byteorder").strip() == b"big")
        storages: dict[str, _Storage] = {}

        def load_storage(pid: Any) -> _Storage:
            if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] in ("storage", b"storage")):
                raise SemsegError(f"unexpected persistent id {pid!r:.80}")
            storage_type, key, _location, numel = pid[1:]
            if not isinstance(storage_type, _StorageType):
                raise _Refused("it asks for a storage of an unknown type")
            key = key.decode() if isinstance(key, bytes) else str(key)
            if key not in storages:
                try:
                    data = archive.read(f"{prefix}data/{key}")
                except (KeyError, zipfile.BadZipFile, OSError, EOFError) as exc:
                    raise SemsegError(f"storage record data/{key} is missing or damaged ({exc})") from None
                raw = np.frombuffer(data, dtype=np.uint8)
                item = storage_type.dtype.numpy.itemsize if storage_type.dtype else 1
                if not isinstance(numel, int) or raw.size < numel * item:
                    raise SemsegError(f"storage record data/{key} holds {raw.size} bytes, "
                                      f"fewer than its {numel} elements need")
                storages[key] = _Storage(raw[: numel * item], storage_type.dtype, big_endian)
            return storages[key]

        with archive.open(prefix + "data.pkl") as file:
            return _unpickle(path, file, {**_BASE_GLOBALS, **_TORCH_GLOBALS}, load_storage)


def _sniff(path: Path) -> str:
    """``zip``, ``safetensors``, ``pickle`` or ``unknown``, from the first bytes of the file."""
    size = path.stat().st_size
    with open(path, "rb") as file:
        head = file.read(9)
    if not head:
        return "empty"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") <= size - 8:
        return "safetensors"
    if head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    return "unknown"


def _expected(suffix: str) -> str:
    return {".safetensors": "a safetensors file",
            ".pdparams": "a Paddle state dict saved by paddle.save"}.get(
        suffix, "a torch checkpoint in the zip format (torch.save, torch >= 1.6)")


def _collect_tensors(path: Path, obj: Any) -> dict[str, np.ndarray]:
    """The numeric arrays of the top-level dict (after unwrapping ``state_dict``/``model``)."""
    if not isinstance(obj, dict):
        raise SemsegError(f"{path}: expected a dict of tensors at the top level, found {type(obj).__name__}")
    obj = _join_paddle_slices(path, obj)
    for key in _WRAPPER_KEYS:
        if isinstance(obj.get(key), dict):
            obj = _join_paddle_slices(path, obj[key])
            break
    tensors: dict[str, np.ndarray] = {}
    for key, value in obj.items():
        if key == _PADDLE_NAME_TABLE:
            continue
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str) \
                and isinstance(value[1], np.ndarray):
            value = value[1]  # Paddle's (tensor name, array) form
        if not isinstance(value, np.ndarray):
            continue  # epochs, hyper-parameters, nested dicts: not weights
        if not isinstance(key, str):
            raise SemsegError(f"{path}: tensor names must be text, found {key!r:.60}")
        if value.dtype.kind not in _NUMERIC_KINDS:
            raise SemsegError(f"{path}: '{key}' is an array of {value.dtype}, not a numeric tensor")
        tensors[key] = value
    if not tensors:
        shown = ", ".join(map(str, list(obj)[:8])) or "none"
        raise SemsegError(f"{path}: no tensors found at the top level (keys: {shown})")
    return tensors


def _join_paddle_slices(path: Path, obj: dict) -> dict:
    """Paddle saves arrays over 1 GiB with pickle protocol 2/3 in slices plus a table; join them."""
    table = obj.get(_PADDLE_SPLIT_TABLE)
    if not isinstance(table, dict):
        return obj
    obj = dict(obj)
    del obj[_PADDLE_SPLIT_TABLE]
    for key, info in table.items():
        try:
            parts = [obj.pop(part) for part in info["slices"]]
            obj[key] = np.concatenate(parts).reshape(info["OriginShape"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SemsegError(f"{path}: the slices of '{key}' do not fit together ({exc})") from None
    return obj


def read_weights(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a weights file into ``{tensor name: numpy array}`` without running code from it.

    ``.safetensors``, ``.pdparams`` (``paddle.save`` of a state dict, Paddle 2.x or 3.x) and
    ``.pth``/``.pt``/``.bin`` (torch's zip format) are read; the format is recognised from the
    content. A top-level ``state_dict``/``model``/``state_dict_ema`` dict is unwrapped; entries that
    are not tensors (epochs, settings) are left out. Dtypes are kept, except torch bfloat16, which
    becomes float32 (Paddle stores bfloat16 as uint16 bits and so do we). Any global that is not
    part of a tensor, a missing, truncated or foreign file raises a one-line :class:`SemsegError`.
    """
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise SemsegError(f"{path}: unknown weights format '{path.suffix}' (expected {', '.join(SUFFIXES)})")
    if not path.is_file():
        raise SemsegError(f"weights file not found: {path} (expected {_expected(path.suffix)})")
    kind = _sniff(path)
    if kind == "safetensors":
        return _read_safetensors(path)
    if kind == "zip":
        return _collect_tensors(path, _read_torch_zip(path))
    if kind == "pickle":
        return _collect_tensors(path, _read_pickle(path))
    what = "an empty file" if kind == "empty" else "not a known weights format"
    raise SemsegError(f"{path}: {what} (expected {_expected(path.suffix)})")
