"""The supervisor's listening sockets: one per listener and worker slot, kept across reloads."""

from __future__ import annotations

import os
import socket

import pytest

from outwork.config.config import Address
from outwork.front.conn_limits import SocketKey
from outwork.proxy.listen_sockets import SocketSet, bound_address, close_unused, open_set

ANY = Address("127.0.0.1", 0)


def closed(sock: socket.socket) -> bool:
    return sock.fileno() == -1


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def close_all(sockets: SocketSet) -> None:
    for sock in sockets:
        sock.close()


def test_one_socket_per_slot_on_one_port_and_one_admin_socket() -> None:
    names = {"public": SocketKey(ANY, "public"), "api": SocketKey(ANY, "api")}
    sockets = open_set(names, ANY, 3)
    try:
        public = sockets.sockets[names["public"]]
        assert len(public) == 3 and len({bound_address(s) for s in public}) == 1
        assert bound_address(sockets.sockets[names["api"]][0]) != bound_address(public[0])
        assert sockets.addresses()["public"] == bound_address(public[0])
        assert sockets.admin_address() is not None
        first, second = sockets.for_slot(0), sockets.for_slot(1)
        assert first.listeners["public"] is public[0] and second.listeners["public"] is public[1]
        assert first.admin is not None and second.admin is None
        for sock in public:  # listening already: the kernel queues connections for the slot
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        address = bound_address(public[0])
        socket.create_connection((address.host, address.port), timeout=5).close()
    finally:
        close_all(sockets)


def test_a_reload_keeps_the_sockets_of_the_listeners_that_stay() -> None:
    stays, goes = SocketKey(ANY, "stays"), SocketKey(ANY, "goes")
    running = open_set({"stays": stays, "goes": goes}, ANY, 2)
    new = open_set({"renamed": stays, "added": SocketKey(ANY, "added")}, None, 3, running)
    try:
        kept = new.sockets[stays]
        assert kept[:2] == running.sockets[stays]  # the same sockets: their queues go on
        assert bound_address(kept[2]) == bound_address(kept[0])  # a third slot, same port
        assert new.admin is None
        close_unused(running, new)
        assert all(closed(sock) for sock in running.sockets[goes])
        assert running.admin is not None and closed(running.sockets[running.admin][0])
        assert not any(closed(sock) for sock in new)
    finally:
        close_all(new)


def test_fewer_workers_let_go_of_the_last_slots() -> None:
    key = SocketKey(ANY, "public")
    running = open_set({"public": key}, None, 3)
    new = open_set({"public": key}, None, 2, running)
    close_unused(running, new)
    try:
        assert new.sockets[key] == running.sockets[key][:2]
        assert [closed(sock) for sock in running.sockets[key]] == [False, False, True]
    finally:
        close_all(new)


def test_a_bind_that_fails_closes_what_was_opened() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        clash = SocketKey(Address("127.0.0.1", taken.getsockname()[1]), "")
        before = open_set({"public": SocketKey(ANY, "public")}, None, 1)
        fds = open_fds()
        with pytest.raises(OSError):
            open_set({"new": SocketKey(ANY, "new"), "clash": clash}, None, 2, before)
        assert open_fds() == fds  # the two sockets of "new" closed again
        assert not any(closed(sock) for sock in before)  # the running ones stay
        close_all(before)
    finally:
        taken.close()


def test_an_ipv6_listener_is_ipv6_only() -> None:
    """IPv6 only, as when asyncio binds it: `[::]:p` and `0.0.0.0:p` can be two listeners."""
    key = SocketKey(Address("::1", 0), "v6")
    try:
        sockets = open_set({"v6": key}, None, 2)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    try:
        sock = sockets.sockets[key][0]
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
        address = bound_address(sock)
        socket.create_connection((address.host, address.port), timeout=5).close()
    finally:
        close_all(sockets)
