"""Saved aggregates (``--save-aggregate``): a compact binary form, and JSON for people.

Binary: the 8 bytes ``TSAGG`` ``\\0`` *format* *flags*, then the aggregate's `to_dict` form
in msgpack, zlib-compressed when flag 1 is set. *format* is the version of this container
(1); the aggregate carries its own version inside (`aggregate.AGGREGATE_VERSION`), and a
reader refuses newer ones. A file named ``*.json`` is written as JSON instead (the same
`to_dict` form). Both are read back by `load`, which tells them apart by their first bytes.
"""

from __future__ import annotations

import zlib

import msgspec
import orjson

from .aggregate import AGGREGATE_KIND, Aggregate
from .inputs import is_url, open_bytes

MAGIC = b"TSAGG\x00"
FORMAT = 1
COMPRESSED = 1


def dumps(agg: Aggregate, compress: bool = True) -> bytes:
    """The binary form of ``agg``."""
    body = msgspec.msgpack.encode(agg.to_dict())
    if compress:
        body = zlib.compress(body, 1)
    return MAGIC + bytes([FORMAT, COMPRESSED if compress else 0]) + body


def loads(data: bytes) -> Aggregate:
    """An aggregate from its binary or JSON form; `ValueError` if it is neither (or newer)."""
    if data.startswith(MAGIC):
        if len(data) < 8:
            raise ValueError("truncated aggregate")
        fmt, flags = data[6], data[7]
        if fmt > FORMAT:
            raise ValueError(
                f"aggregate file format {fmt} is newer than this tracedsync reads ({FORMAT}); "
                "upgrade tracedsync"
            )
        body = data[8:]
        if flags & COMPRESSED:
            try:
                body = zlib.decompress(body)
            except zlib.error as exc:
                raise ValueError(f"corrupt aggregate ({exc})") from exc
        try:
            d = msgspec.msgpack.decode(body)
        except msgspec.DecodeError as exc:
            raise ValueError(f"corrupt aggregate ({exc})") from exc
    else:
        try:
            d = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"not an aggregate ({exc})") from exc
    return Aggregate.from_dict(d)


def save(agg: Aggregate, path: str) -> None:
    """Write ``agg`` to ``path``: JSON if it ends with ``.json``, else binary."""
    data = (
        orjson.dumps(agg.to_dict()) if path.endswith(".json") else dumps(agg)
    )
    if is_url(path):
        from .inputs import _fs

        fs, inner = _fs(path)
        with fs.open(inner, "wb") as fh:
            fh.write(data)
        return
    with open(path, "wb") as fh:
        fh.write(data)


def load(path: str) -> Aggregate:
    """Read an aggregate written by `save`; `ValueError` if it is not one."""
    with open_bytes(path) as fh:
        return loads(fh.read())


def is_shard(path: str) -> bool:
    """True for a file written by `save` (sniffed from its first bytes)."""
    try:
        with open_bytes(path) as fh:
            head = fh.read(64)
    except OSError:
        return False
    return head.startswith(MAGIC) or head.startswith(b'{"kind":"' + AGGREGATE_KIND.encode())
