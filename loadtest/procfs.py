"""Another process seen from outside through /proc (Linux): resident memory, its fds by kind, its TCP sockets.

The gateway reports its own totals on `/admin/stats`; these break them down, so a soak report can say *what*
did not come back (sockets to a provider left in CLOSE_WAIT, pipes, files), and read the simulators' memory,
which they do not report. Every function returns None (or nothing) where /proc cannot be read.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

_TCP_STATES = {"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1", "05": "FIN_WAIT2",
               "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK", "0A": "LISTEN",
               "0B": "CLOSING"}


def rss_bytes(pid: int) -> int | None:
    try:
        resident_pages = int(Path(f"/proc/{pid}/statm").read_text(encoding="ascii").split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time the process has used so far."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
        # The command name (field 2) may hold spaces: count fields from after its closing parenthesis.
        fields = stat[stat.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _fd_targets(pid: int) -> list[str]:
    folder = f"/proc/{pid}/fd"
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    targets = []
    for name in names:
        with contextlib.suppress(OSError):  # closed between listdir and readlink
            targets.append(os.readlink(f"{folder}/{name}"))
    return targets


def fd_kinds(pid: int) -> dict[str, int]:
    """Open fds by kind: socket, pipe, anon_inode:[eventpoll] (and other anon inodes by name), file."""
    kinds: Counter[str] = Counter()
    for target in _fd_targets(pid):
        if target.startswith("socket:"):
            kinds["socket"] += 1
        elif target.startswith("pipe:"):
            kinds["pipe"] += 1
        elif target.startswith("anon_inode:"):
            kinds[target] += 1
        else:
            kinds["file"] += 1
    return dict(sorted(kinds.items()))


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1], 16)


def tcp_sockets(pid: int, *, listen_port: int, peers: Mapping[int, str]) -> dict[str, int]:
    """The process's TCP sockets as `"<peer> <STATE>": count`. Peer: `clients` (accepted on `listen_port`),
    `listen`, the name `peers` gives a remote port (e.g. a simulator), else `other`."""
    inodes = {t[8:-1] for t in _fd_targets(pid) if t.startswith("socket:[")}
    found: Counter[str] = Counter()
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text(encoding="ascii").splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[9] not in inodes:
                continue
            local, remote, state = _port(fields[1]), _port(fields[2]), _TCP_STATES.get(fields[3], fields[3])
            if state == "LISTEN":
                peer = "listen"
            elif local == listen_port:
                peer = "clients"
            else:
                peer = peers.get(remote, "other")
            found[f"{peer} {state}"] += 1
    return dict(sorted(found.items()))
