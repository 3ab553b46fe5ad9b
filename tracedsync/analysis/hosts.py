"""Which host a log comes from, and ids made unique across hosts.

A process id, a primitive id (``"pid.n"``) and a thread (pid, tid) identify something only
within one boot of one machine, and each host's monotonic clock starts at its own boot. The
``session`` header names the host (``hostname``, ``boot_id``) and pairs the two clocks
(``mono_ns``, ``wall_ns``). The *host key* is ``"name/boot"`` (the first 8 hex digits of the
boot id); logs written before the header had ``boot_id`` get the key ``""``, so old logs still
analyse as one host, as they always did.

Each file's aggregate is keyed by its host when it is finished (`qualify`): ids become
``"pid.n@host"`` and threads ``(host, pid, tid)``. A report over one host shows ids without the
suffix (`unqualified`); over several it keeps them, and its times are wall-clock times.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from .aggregate import Aggregate, HostInfo

UNKNOWN_PRIM = "?"


def host_key(session: dict[str, Any]) -> str:
    """The host key of a ``session`` header (``""`` for headers without ``boot_id``)."""
    if "boot_id" not in session:
        return ""
    name = session.get("hostname")
    name = name if isinstance(name, str) and name else "?"
    boot = session.get("boot_id")
    if isinstance(boot, str) and boot:
        return f"{name}/{boot.replace('-', '')[:8]}"
    return name


def host_info(session: dict[str, Any]) -> HostInfo:
    """The `HostInfo` a ``session`` header gives."""
    name = session.get("hostname")
    boot = session.get("boot_id")
    wall, mono = session.get("wall_ns"), session.get("mono_ns")
    offset = wall - mono if type(wall) is int and type(mono) is int else None
    return HostInfo(
        name=name if isinstance(name, str) else "?",
        boot_id=boot if isinstance(boot, str) else None,
        offset_ns=offset,
    )


def qualify(agg: Aggregate, host: str) -> None:
    """Key the ids of one file's aggregate (host ``""``) by ``host``, in place."""
    if not host:
        return
    suffix = "@" + host
    agg.rename(lambda p: p if p == UNKNOWN_PRIM else p + suffix, lambda h: h or host)


def host_of_prim(prim: str) -> str:
    """The host a (qualified) primitive id names; ``""`` for an unqualified one."""
    return prim.rsplit("@", 1)[1] if "@" in prim else ""


def hosts_of(agg: Aggregate) -> list[str]:
    """The hosts of the files in ``agg``, sorted."""
    # An empty file (a process killed before its first flush) names no host.
    return sorted({s.host for s in agg.sources if s.events or s.sessions}) or sorted(
        {s.host for s in agg.sources})


@contextlib.contextmanager
def unqualified(agg: Aggregate) -> Iterator[Aggregate]:
    """``agg`` with its ids as the logs wrote them while the block runs, if it covers one host
    (renamed in place, and back after: no copy of the whole aggregate); as it is otherwise."""
    hosts = hosts_of(agg)
    if len(hosts) != 1 or not hosts[0]:
        yield agg
        return
    host = hosts[0]
    suffix = "@" + host
    agg.rename(lambda p: p.removesuffix(suffix), lambda h: "")
    try:
        yield agg
    finally:
        agg.rename(lambda p: p if p == UNKNOWN_PRIM else p + suffix, lambda h: h or host)
