"""The supervisor's listening sockets (`workers: N`): opened before the workers fork, handed
from a worker to its successor, so that a connection the kernel queued is never in a socket
that closes.

Per listener, one SO_REUSEPORT socket per worker slot (the kernel spreads new connections over
them by hash, which keeps the workers as evenly loaded as when each bound its own), and one
admin socket for the worker in slot 0. The supervisor holds every socket for as long as its
listener is configured; a worker inherits its slot's sockets by the fork. On a reload the new
worker of a slot and the old one accept from the same socket until the old one stops; a socket
closes only when a reload removes its listener (or its slot, with fewer `workers`), and then
when the last old worker that holds it stops accepting: a connection queued there at that
instant is reset (or, with `net.ipv4.tcp_migrate_req=1`, moved to another socket of the port),
as with a single process that closes a removed listener.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass

from outwork.config.config import Address
from outwork.front.conn_limits import SocketKey

BACKLOG = 1024  # each listening socket's accept queue (also what a worker listens with)
ADMIN = "\0admin"  # the admin's key name: no listener can be called that


def admin_key(bind: Address) -> SocketKey:
    return SocketKey(bind, ADMIN)


def listen(address: Address) -> socket.socket:
    """A listening SO_REUSEPORT socket on `address`; raises OSError."""
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:  # `[::]:p` is IPv6 only, as when asyncio binds it
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address.host, address.port))
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def bound_address(sock: socket.socket) -> Address:
    host, port = sock.getsockname()[:2]
    return Address(str(host), int(port))


@dataclass(frozen=True)
class SlotSockets:
    """What one worker inherits: its slot's socket per listener name, and the admin's (slot 0)."""

    listeners: dict[str, socket.socket]
    admin: socket.socket | None

    def __iter__(self) -> Iterator[socket.socket]:
        yield from self.listeners.values()
        if self.admin is not None:
            yield self.admin


@dataclass(frozen=True)
class SocketSet:
    """The sockets of one config: per key, one per slot (the admin's: one)."""

    sockets: dict[SocketKey, list[socket.socket]]
    names: dict[str, SocketKey]  # listener name -> its key
    admin: SocketKey | None

    def addresses(self) -> dict[str, Address]:
        """Listener name -> the address its sockets are bound to (a port 0 resolved)."""
        return {name: bound_address(self.sockets[key][0]) for name, key in self.names.items()}

    def admin_address(self) -> Address | None:
        return None if self.admin is None else bound_address(self.sockets[self.admin][0])

    def for_slot(self, slot: int) -> SlotSockets:
        listeners = {name: self.sockets[key][slot] for name, key in self.names.items()}
        admin = self.sockets[self.admin][0] if self.admin is not None and slot == 0 else None
        return SlotSockets(listeners, admin)

    def __iter__(self) -> Iterator[socket.socket]:
        for sockets in self.sockets.values():
            yield from sockets


def open_set(
    listeners: dict[str, SocketKey],
    admin: Address | None,
    slots: int,
    running: SocketSet | None = None,
) -> SocketSet:
    """The sockets for `listeners` (name -> key) and `admin` with `slots` workers: those of
    `running` whose key stays are kept (the same socket objects, so the successor of a slot
    inherits its queue), the others opened now. Raises OSError, having closed what it opened."""
    keys = dict.fromkeys(listeners.values())
    admin_as = admin_key(admin) if admin is not None else None
    wanted = {key: slots for key in keys}
    if admin_as is not None:
        wanted[admin_as] = 1
    kept = running.sockets if running is not None else {}
    opened: list[socket.socket] = []
    sockets: dict[SocketKey, list[socket.socket]] = {}
    try:
        for key, count in wanted.items():
            have = kept.get(key, [])[:count]
            while len(have) < count:
                # A port 0 is resolved by the first socket; the others join its port.
                where = bound_address(have[0]) if have else key.bind
                sock = listen(where)
                opened.append(sock)
                have.append(sock)
            sockets[key] = have
    except OSError:
        for sock in opened:
            sock.close()
        raise
    return SocketSet(sockets, dict(listeners), admin_as)


def close_unused(old: SocketSet, new: SocketSet) -> None:
    """Close the supervisor's copy of each socket of `old` that `new` does not hold."""
    held = {id(sock) for sock in new}
    for sock in old:
        if id(sock) not in held:
            sock.close()
