"""Values that cross from a grading kernel to the grader: JSON and raw bytes, never pickle.

The kernel sends what the student's functions returned (:mod:`~mlcourse.exercise_channel`);
the grader rebuilds the values with :func:`decode` and runs the tests on them in its own
process (:mod:`~mlcourse.grading.replay`). Decoding builds only plain data (numbers,
strings, lists, dicts, NumPy arrays, PyTorch tensors); anything else the kernel sent comes
back as an :class:`Opaque` marker that supports no operation a test could rely on.

:func:`digest` fingerprints the inputs of a call (tensors by their bytes, modules by their
weights, flags and gradients, random generators by their state), so that the grader can
check that the student's function was called with the very inputs the test builds.
"""
from __future__ import annotations

import base64
import collections
import dataclasses
import hashlib
import json
import math
import sys
import types

import numpy as np

__all__ = ["Opaque", "WireError", "encode", "decode", "digest", "MAX_BYTES"]

#: The most a kernel may send for one test cell, in bytes of JSON.
MAX_BYTES = 32 * 2**20
MAX_DEPTH = 24
MAX_ITEMS = 100_000


class WireError(ValueError):
    """What the kernel sent is not a value the grader accepts."""


class Opaque:
    """A value the grader cannot rebuild (an object of the student's own type, say)."""

    def __init__(self, type_name: str):
        self.type_name = str(type_name)[:100]

    def __repr__(self) -> str:
        return f"<{self.type_name} object the grader cannot rebuild>"

    def __eq__(self, other):
        return False

    __hash__ = object.__hash__


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _type_name(value) -> str:
    t = type(value)
    return f"{t.__module__}.{t.__qualname__}"


def _array(arr: np.ndarray) -> dict:
    arr = np.require(arr, requirements="C")  # keeps 0-d arrays 0-d, unlike ascontiguousarray
    return {"dtype": arr.dtype.str, "shape": list(arr.shape), "data": _b64(arr.tobytes())}


def encode(value, refs: dict | None = None, _depth: int = 0) -> dict:
    """A JSON-able description of ``value``; ``refs`` maps ``id()`` of the call's inputs to their place."""
    torch = sys.modules.get("torch")  # a kernel that never imported torch holds no tensor

    if refs and id(value) in refs and not isinstance(value, (bool, int, float, str, type(None))):
        return {"t": "ref", "path": refs[id(value)]}
    if _depth > MAX_DEPTH:
        return {"t": "opaque", "type": "nested too deep"}
    if value is None:
        return {"t": "none"}
    if isinstance(value, bool):
        return {"t": "bool", "v": value}
    if isinstance(value, int):
        return {"t": "int", "v": str(value)}
    if isinstance(value, float):
        return {"t": "float", "v": value.hex()}
    if isinstance(value, str):
        return {"t": "str", "v": value}
    if isinstance(value, bytes):
        return {"t": "bytes", "v": _b64(value)}
    if torch is not None and isinstance(value, torch.Tensor):
        t = value.detach()
        if t.layout != torch.strided:
            t = t.to_dense()
        t = t.cpu().contiguous()
        out = {"t": "tensor", "torch_dtype": str(t.dtype).removeprefix("torch."),
               "requires_grad": bool(value.requires_grad)}
        if t.dtype == torch.bfloat16:
            t = t.float()
        if t.is_complex() or t.dtype.is_floating_point or t.dtype in (torch.bool, torch.uint8, torch.int8,
                                                                        torch.int16, torch.int32, torch.int64):
            return {**out, **_array(t.numpy())}
        return {"t": "opaque", "type": f"tensor of {t.dtype}"}
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            return {"t": "list", "items": [encode(v, refs, _depth + 1) for v in value.tolist()]}
        return {"t": "ndarray", **_array(value)}
    if isinstance(value, np.generic):
        return {"t": "npscalar", **_array(np.asarray(value))}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return {"t": "namedtuple", "type": type(value).__name__, "fields": list(value._fields),
                "items": [encode(v, refs, _depth + 1) for v in value]}
    if isinstance(value, (list, tuple)):
        if len(value) > MAX_ITEMS:
            return {"t": "opaque", "type": f"{type(value).__name__} of {len(value)} items"}
        return {"t": type(value).__name__, "items": [encode(v, refs, _depth + 1) for v in value]}
    if isinstance(value, (set, frozenset)):
        items = [encode(v, refs, _depth + 1) for v in value]
        return {"t": type(value).__name__, "items": sorted(items, key=lambda e: json.dumps(e, sort_keys=True))}
    if isinstance(value, dict):
        return {"t": "dict", "items": [[encode(k, refs, _depth + 1), encode(v, refs, _depth + 1)]
                                       for k, v in value.items()]}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"t": "record", "type": type(value).__name__,
                "fields": {f.name: encode(getattr(value, f.name), refs, _depth + 1)
                           for f in dataclasses.fields(value)}}
    return {"t": "opaque", "type": _type_name(value)}


def _bytes(text) -> bytes:
    if not isinstance(text, str):
        raise WireError("array data must be base64 text")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise WireError("array data is not valid base64") from None


def _decode_array(obj: dict) -> np.ndarray:
    dtype = np.dtype(obj["dtype"])
    if dtype.hasobject:
        raise WireError("object arrays are not accepted")
    shape = [int(s) for s in obj["shape"]]
    if any(s < 0 for s in shape):
        raise WireError("negative array dimension")
    data = _bytes(obj["data"])
    if len(data) != math.prod(shape) * dtype.itemsize:
        raise WireError("array data does not match its shape")
    return np.frombuffer(data, dtype=dtype).reshape(shape).copy()


def decode(obj, refs=None, _depth: int = 0):
    """The value described by ``obj`` (from :func:`encode`); ``refs(path)`` resolves input references."""
    import torch

    if _depth > MAX_DEPTH + 2:
        raise WireError("value nested too deep")
    if not isinstance(obj, dict) or not isinstance(obj.get("t"), str):
        raise WireError("not an encoded value")
    t = obj["t"]
    sub = lambda v: decode(v, refs, _depth + 1)  # noqa: E731
    try:
        if t == "none":
            return None
        if t == "bool":
            return bool(obj["v"])
        if t == "int":
            text = str(obj["v"])
            if len(text) > 4300:
                raise WireError("integer too long")
            return int(text)
        if t == "float":
            return float.fromhex(str(obj["v"]))
        if t == "str":
            return str(obj["v"])
        if t == "bytes":
            return _bytes(obj["v"])
        if t == "ndarray":
            return _decode_array(obj)
        if t == "npscalar":
            return _decode_array(obj)[()]
        if t == "tensor":
            name = str(obj["torch_dtype"])
            dtype = getattr(torch, name, None)
            if not isinstance(dtype, torch.dtype):
                raise WireError(f"unknown tensor dtype {name!r}")
            tensor = torch.from_numpy(_decode_array(obj)).to(dtype)
            if obj.get("requires_grad") and (tensor.is_floating_point() or tensor.is_complex()):
                tensor.requires_grad_(True)
            return tensor
        if t in ("list", "tuple", "set", "frozenset"):
            items = [sub(v) for v in obj["items"]]
            return {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}[t](items)
        if t == "namedtuple":
            fields = [str(f) for f in obj["fields"]]
            kind = collections.namedtuple(str(obj["type"])[:60] or "record", fields, rename=True)
            return kind(*[sub(v) for v in obj["items"]])
        if t == "dict":
            return {sub(k): sub(v) for k, v in obj["items"]}
        if t == "record":
            return types.SimpleNamespace(**{str(k): sub(v) for k, v in obj["fields"].items()})
        if t == "ref":
            if refs is None:
                raise WireError("a reference to an input outside a call")
            return refs(obj["path"])
        if t == "opaque":
            return Opaque(obj.get("type", "unknown"))
    except (KeyError, TypeError, AttributeError, OverflowError) as err:
        raise WireError(f"malformed {t!r} value ({type(err).__name__}: {err})") from None
    raise WireError(f"unknown kind of value {t!r}")


def _feed(h, value, depth: int, seen: set) -> None:
    torch = sys.modules.get("torch")

    if depth > MAX_DEPTH:
        h.update(b"<deep>")
        return
    if value is None or isinstance(value, (bool, int, str, bytes)):
        h.update(f"{type(value).__name__}:{value!r};".encode())
        return
    if isinstance(value, float):
        h.update(f"f:{value.hex()};".encode())
        return
    if torch is not None and isinstance(value, torch.Tensor):
        t = value.detach().cpu()
        if t.layout != torch.strided:
            t = t.to_dense()
        h.update(f"T:{t.dtype}:{tuple(t.shape)};".encode())
        t = t.contiguous()
        if t.dtype == torch.bfloat16:
            t = t.float()
        h.update(t.numpy().tobytes() if t.numel() else b"")
        return
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            _feed(h, value.tolist(), depth + 1, seen)
            return
        h.update(f"A:{value.dtype.str}:{value.shape};".encode())
        h.update(np.require(value, requirements="C").tobytes())
        return
    if isinstance(value, np.generic):
        h.update(f"S:{value.dtype.str}:".encode() + np.asarray(value).tobytes())
        return
    if id(value) in seen:
        h.update(b"<cycle>")
        return
    seen = seen | {id(value)}
    if isinstance(value, (list, tuple)):
        h.update(f"{type(value).__name__}[{len(value)}:".encode())
        for v in value:
            _feed(h, v, depth + 1, seen)
        h.update(b"]")
        return
    if isinstance(value, dict):
        h.update(f"dict[{len(value)}:".encode())
        for k, v in value.items():
            _feed(h, k, depth + 1, seen)
            _feed(h, v, depth + 1, seen)
        h.update(b"]")
        return
    if isinstance(value, (set, frozenset)):
        parts = sorted(digest(v) for v in value)
        h.update(f"set:{','.join(parts)};".encode())
        return
    if torch is not None and isinstance(value, torch.nn.Module):
        h.update(f"M:{type(value).__qualname__}:".encode())
        for name, sub in value.named_modules():
            h.update(f"{name}={sub.training};".encode())
        for name, p in value.named_parameters():
            h.update(f"{name}:{p.requires_grad}:".encode())
            _feed(h, p, depth + 1, seen)
            _feed(h, p.grad, depth + 1, seen)
        for name, b in value.named_buffers():
            h.update(f"{name}:".encode())
            _feed(h, b, depth + 1, seen)
        return
    if isinstance(value, np.random.Generator):
        h.update(b"G:" + json.dumps(value.bit_generator.state, sort_keys=True, default=str).encode())
        return
    if torch is not None and isinstance(value, torch.Generator):
        h.update(b"TG:" + value.get_state().numpy().tobytes())
        return
    if isinstance(value, (types.FunctionType, types.BuiltinFunctionType, type)) or callable(value) and \
            hasattr(value, "__qualname__"):
        h.update(f"F:{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', '')};".encode())
        return
    if dataclasses.is_dataclass(value):
        h.update(f"D:{type(value).__qualname__}:".encode())
        for f in dataclasses.fields(value):
            h.update(f.name.encode())
            _feed(h, getattr(value, f.name), depth + 1, seen)
        return
    attrs = getattr(value, "__dict__", None)
    h.update(f"O:{type(value).__qualname__}:".encode())
    if isinstance(attrs, dict):
        _feed(h, dict(sorted(attrs.items())), depth + 1, seen)


def digest(value) -> str:
    """SHA-256 of the content of ``value`` (see the module's description)."""
    h = hashlib.sha256()
    _feed(h, value, 0, set())
    return h.hexdigest()
