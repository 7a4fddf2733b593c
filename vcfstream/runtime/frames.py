"""Messages between processes as data, never code: a JSON header and raw buffers.

What a reader process sends the flow's process must not be able to run code there, even from a
reader taken over through a parser bug; ``pickle`` can (any callable, on load). A frame is

    "VSF1" | header length (u32) | buffer count (u32) | one u64 size per buffer | header | buffers

where the header is a JSON object and each buffer is the raw bytes of a numpy array (its dtype,
from a fixed set of numeric types, and shape are in the header) or an Arrow IPC stream (a table).
Values are typed on both sides: ``encode`` turns dataclasses, lists, tuples, dicts, scalars,
numpy arrays and Arrow tables into JSON and buffers; ``decode`` builds the type it is told to
expect (a dataclass's fields by their annotations) and refuses anything else with
``FrameError``. Nothing is looked up by a name the sender chose, except an error's class, among
the few ``ERRORS`` lists.

Large buffers are not copied: the sender writes an array's memory and the Arrow IPC writer's
own buffers (the table's columns) to the pipe as they lie, and the receiver reads each buffer
straight into the array or Arrow buffer it keeps (``np.empty``, not zero-filled). A received
table is validated in full (offsets, UTF-8) before use, so a malformed one fails here, not as a
bad memory read later.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import os
import struct
import subprocess
import sys
import types
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any, BinaryIO, Literal, TypeAlias, Union, get_args, get_origin, get_type_hints

import numpy as np
import orjson
import pyarrow as pa

from vcfstream.errors import (
    ConfigurationError,
    FileChanged,
    InputError,
    VcfFormatError,
    VcfstreamError,
)
from vcfstream.runtime.malloc import MALLOC_ARENAS

MAGIC = b"VSF1"
_HEAD = struct.Struct("<4sII")  # magic, header bytes, buffer count
MAX_HEADER_BYTES = 1 << 30
MAX_BUFFERS = 1 << 16
# numpy types a buffer may hold (little-endian numbers and bools): never "object", whose items are pointers
DTYPES = frozenset(np.dtype(name).str for name in (
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64"))
# Errors that cross as themselves: (type name, message, path, line, rule) -> one of these classes.
# Any other error arrives as a VcfstreamError naming its type.
ERRORS: dict[str, type[BaseException]] = {cls.__name__: cls for cls in (
    VcfstreamError, InputError, FileChanged, VcfFormatError, ConfigurationError, OSError, MemoryError, ValueError)}
_ERROR_FIELDS = {"path": str, "line": int, "rule": str}


class FrameError(VcfstreamError):
    """A message that is not a frame of this protocol, or does not hold what was expected."""


Piece: TypeAlias = "bytes | memoryview | pa.Buffer"
Buffer: TypeAlias = "list[Piece]"  # one buffer, as the pieces it is written from
Frame: TypeAlias = "list[Piece]"


class _Pieces:
    """A file-like sink for Arrow's IPC writer that keeps what it is given: Arrow passes its own
    buffers (a table's columns) without copying them."""

    def __init__(self) -> None:
        self.pieces: list[Piece] = []
        self.closed = False

    def write(self, data: Piece) -> int:
        self.pieces.append(data)
        return memoryview(data).nbytes

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def _nbytes(piece: Piece) -> int:
    return piece.size if isinstance(piece, pa.Buffer) else memoryview(piece).nbytes


def encode(value: Any, buffers: list[Buffer]) -> Any:
    """``value`` as JSON-able data; its arrays, tables and bytes are appended to ``buffers``."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value.value if isinstance(value, Enum) else value
    if isinstance(value, (bytes, bytearray, memoryview)):
        buffers.append([value])
        return {"$bytes": len(buffers) - 1}
    if isinstance(value, np.ndarray):
        if value.dtype.str not in DTYPES:
            raise FrameError(f"an array of dtype {value.dtype} cannot be sent (numbers and bools only)")
        array = np.ascontiguousarray(value)
        buffers.append([array.data.cast("B")] if array.nbytes else [])
        return {"$ndarray": len(buffers) - 1, "dtype": array.dtype.str, "shape": list(array.shape)}
    if isinstance(value, pa.Table):
        sink = _Pieces()
        with pa.ipc.new_stream(pa.PythonFile(sink, mode="w"), value.schema) as writer:
            writer.write_table(value)
        buffers.append(sink.pieces)
        return {"$arrow": len(buffers) - 1}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name), buffers) for f in dataclasses.fields(value) if f.init}
    if isinstance(value, (list, tuple)):
        return [encode(item, buffers) for item in value]
    if isinstance(value, Mapping) and all(isinstance(key, str) for key in value):
        return {key: encode(item, buffers) for key, item in value.items()}
    raise FrameError(f"a {type(value).__name__} cannot be sent as data")


def decode(expected: Any, data: Any, buffers: list[np.ndarray]) -> Any:
    """``data`` (from ``encode``) as an instance of ``expected`` (a type or type annotation)."""
    origin, args = get_origin(expected), get_args(expected)
    if expected is Any:
        return data
    if origin in (Union, types.UnionType):
        if data is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return decode(option, data, buffers)
            except FrameError as exc:
                errors.append(str(exc))
        raise FrameError(" / ".join(errors))
    if origin is Literal:
        if data not in args:
            raise FrameError(f"{data!r} is not one of {args}")
        return data
    if expected is bool or expected is str:
        return _checked(data, expected)
    if expected is int:
        if type(data) is not int:
            raise FrameError(f"expected an integer, got {type(data).__name__}")
        return data
    if expected is float:
        if type(data) not in (int, float):
            raise FrameError(f"expected a number, got {type(data).__name__}")
        return float(data)
    if expected is bytes:
        return bytes(_buffer(data, "$bytes", buffers))
    if expected is np.ndarray:
        return _array(data, buffers)
    if expected is pa.Table:
        return _table(data, buffers)
    if origin in (list, tuple):
        items = _checked(data, list)
        if origin is list and args and args[0] in (str, int) and all(type(item) is args[0] for item in items):
            return items  # e.g. a file's sample names: one pass, not one call per name
        if origin is list:
            return [decode(args[0] if args else Any, item, buffers) for item in items]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(decode(args[0], item, buffers) for item in items)
        if len(items) != len(args):
            raise FrameError(f"expected {len(args)} items, got {len(items)}")
        return tuple(decode(arg, item, buffers) for arg, item in zip(args, items, strict=True))
    if origin is dict:
        return {_checked(key, str): decode(args[1], item, buffers) for key, item in _checked(data, dict).items()}
    if isinstance(expected, type) and dataclasses.is_dataclass(expected):
        fields = _checked(data, dict)
        hints, known = _fields(expected)
        if not set(fields) <= known:
            raise FrameError(f"{expected.__name__} has no field {sorted(set(fields) - known)[0]!r}")
        return expected(**{name: decode(hints[name], item, buffers) for name, item in fields.items()})
    raise FrameError(f"cannot receive a {expected!r}")


@functools.cache
def _fields(cls: type) -> tuple[dict[str, Any], frozenset[str]]:
    """A dataclass's field annotations, and the names its ``__init__`` takes (looked up once)."""
    return get_type_hints(cls), frozenset(f.name for f in dataclasses.fields(cls) if f.init)


def _checked(data: Any, kind: type) -> Any:
    if type(data) is not kind:
        raise FrameError(f"expected {kind.__name__}, got {type(data).__name__}")
    return data


def _buffer(data: Any, marker: str, buffers: list[np.ndarray]) -> np.ndarray:
    index = _checked(data, dict).get(marker)
    if type(index) is not int or not 0 <= index < len(buffers):
        raise FrameError(f"no buffer {index!r} ({marker})")
    return buffers[index]


def _array(data: Any, buffers: list[np.ndarray]) -> np.ndarray:
    raw = _buffer(data, "$ndarray", buffers)
    dtype, shape = data.get("dtype"), _checked(data.get("shape"), list)
    if dtype not in DTYPES or not all(type(n) is int and n >= 0 for n in shape):
        raise FrameError(f"an array of dtype {dtype!r} and shape {shape!r} is not accepted")
    itemsize = np.dtype(dtype).itemsize
    if int(np.prod(shape, dtype=np.int64)) * itemsize != raw.nbytes:
        raise FrameError(f"an array of shape {shape} and dtype {dtype} does not fill {raw.nbytes} bytes")
    return raw.view(np.dtype(dtype)).reshape(shape)  # the received memory, writable, no copy


def _table(data: Any, buffers: list[np.ndarray]) -> pa.Table:
    raw = _buffer(data, "$arrow", buffers)
    try:
        table = pa.ipc.open_stream(pa.py_buffer(raw)).read_all()  # refers to the received memory
        table.validate(full=True)
    except (pa.ArrowException, ValueError) as exc:
        raise FrameError(f"not a valid Arrow IPC stream: {exc}") from None
    return table


def frame(header: Mapping[str, Any], buffers: list[Buffer]) -> Frame:
    """One message: its head, header and buffers, as the pieces to write."""
    text = orjson.dumps(header)
    sizes = [sum(_nbytes(piece) for piece in buffer) for buffer in buffers]
    head = _HEAD.pack(MAGIC, len(text), len(sizes)) + struct.pack(f"<{len(sizes)}Q", *sizes)
    return [head, text, *(piece for buffer in buffers for piece in buffer)]


def send(pipe: BinaryIO, pieces: Frame) -> None:
    for piece in pieces:
        pipe.write(piece)
    pipe.flush()


def receive(pipe: io.BufferedIOBase) -> tuple[dict[str, Any], list[np.ndarray]]:
    """The next frame's header and buffers; ``EOFError`` when the pipe closes, ``FrameError`` for
    bytes that are not a frame (then the pipe's state is unknown: stop reading it)."""
    head = pipe.read(_HEAD.size)
    if not head:
        raise EOFError("pipe closed")
    if len(head) < _HEAD.size:
        raise EOFError("pipe closed mid-message")
    magic, size, count = _HEAD.unpack(head)
    if magic != MAGIC:
        raise FrameError(f"a message that does not start with {MAGIC!r} (it starts with {magic!r})")
    if size > MAX_HEADER_BYTES or count > MAX_BUFFERS:
        raise FrameError(f"a header of {size:,} bytes with {count:,} buffers is over the limits")
    sizes = struct.unpack(f"<{count}Q", bytes(read_exactly(pipe, 8 * count)))
    try:
        header = orjson.loads(bytes(read_exactly(pipe, size)))
    except orjson.JSONDecodeError as exc:
        raise FrameError(f"a header that is not JSON: {exc}") from None
    if type(header) is not dict:
        raise FrameError("a header that is not a JSON object")
    return header, [read_exactly(pipe, n) for n in sizes]


def read_exactly(pipe: io.BufferedIOBase, size: int) -> np.ndarray:
    """``size`` bytes, read straight into the buffer that keeps them. Not a ``bytearray``: that
    zero-fills its memory first, under the GIL (2.1 s of the flow's GIL per 1M alleles, py-spy);
    ``np.empty`` leaves the pages to the kernel, which fills them during the read."""
    buffer = np.empty(size, dtype=np.uint8)
    view, done = buffer.data, 0  # a memoryview of the array
    while done < size:
        n = pipe.readinto(view[done:])
        if not n:
            raise EOFError("pipe closed mid-message")
        done += n
    return buffer


def error_data(exc: BaseException) -> dict[str, Any]:
    """``exc`` as data: the nearest class of ``ERRORS`` it is, its message and its path, line and
    rule when it has them."""
    known = next((cls for cls in type(exc).__mro__ if ERRORS.get(cls.__name__) is cls), None)
    message = str(exc)
    if known is None:
        known, message = VcfstreamError, f"{type(exc).__name__}: {exc}"
    elif known is not type(exc) and not issubclass(known, VcfstreamError):
        message = f"{type(exc).__name__}: {exc}"  # e.g. FileNotFoundError, sent as an OSError
    data: dict[str, Any] = {"type": known.__name__, "message": message}
    if isinstance(exc, VcfstreamError):
        for name, kind in _ERROR_FIELDS.items():
            value = getattr(exc, name, ...)
            if value is None or isinstance(value, kind):
                data[name] = value
    return data


def error_from_data(data: Any) -> BaseException:
    """The exception ``error_data`` described, as one of ``ERRORS`` (``FrameError`` for anything else)."""
    cls = ERRORS.get(_checked(data, dict).get("type"))
    message = data.get("message")
    if cls is None or type(message) is not str:
        raise FrameError(f"an error of unknown type {data.get('type')!r}")
    if not issubclass(cls, VcfstreamError):
        return cls(message)
    error = cls.__new__(cls)  # its message as sent; __init__ would format it again
    Exception.__init__(error, message)
    for name, kind in _ERROR_FIELDS.items():
        if name in data:
            if data[name] is not None and type(data[name]) is not kind:
                raise FrameError(f"an error's {name} that is not a {kind.__name__}")
            setattr(error, name, data[name])
    return error


def spawn(module: str, *labels: str) -> tuple[subprocess.Popen[bytes], io.BufferedWriter, io.BufferedReader]:
    """Start ``python -m module <request fd> <reply fd> [labels]`` (a reader or a store writer; the
    labels name it to ``ps``, e.g. the store): its process, the pipe to write requests to and the
    pipe to read its answers from. It gets ``MALLOC_ARENA_MAX`` (``runtime.malloc``)."""
    to_child_r, to_child_w = os.pipe()
    try:
        from_child_r, from_child_w = os.pipe()
    except OSError:
        os.close(to_child_r)
        os.close(to_child_w)
        raise
    try:
        # -P: the working directory does not go first on sys.path (a tasks.py there, or
        # another checkout, would shadow this package)
        process = subprocess.Popen(
            [sys.executable, "-P", "-m", module, str(to_child_r), str(from_child_w), *labels],
            pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL,
            env={"MALLOC_ARENA_MAX": str(MALLOC_ARENAS), **os.environ, "PYTHONPATH": _package_path()})
    except BaseException:
        os.close(to_child_w)
        os.close(from_child_r)
        raise
    finally:
        os.close(to_child_r)
        os.close(from_child_w)
    return process, os.fdopen(to_child_w, "wb"), os.fdopen(from_child_r, "rb")


def _package_path() -> str:
    """PYTHONPATH with the directory holding the ``vcfstream`` package first: a child imports the same code."""
    here = str(Path(__file__).resolve().parents[2])
    return os.pathsep.join([here, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])
