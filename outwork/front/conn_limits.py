"""Open client connections per listener and per client address, and the caps on them.

One `ConnectionCounts` lives as long as the process serves: a reload builds a new gateway
state while the old one's connections drain, and those still hold their slots, so the counts
must not start again from zero with each state. Counts are kept per listening socket (not
per listener name): a reload may rename the listener on a kept socket, and its draining
connections still share the cap with the new ones.
"""

from __future__ import annotations

from typing import NamedTuple

from outwork.config.config import Address, ListenerConfig
from outwork.observe.refusals import Refusal


class SocketKey(NamedTuple):
    """What makes a listener's socket the same across a reload: its bind address; for port 0
    (any free port, chosen anew at each bind) its name too."""

    bind: Address
    name: str


def socket_key(listener: ListenerConfig) -> SocketKey:
    return SocketKey(listener.bind, "" if listener.bind.port else listener.name)


# Listener configs whose socket keys are remembered (a few per config load); past this the
# memo starts again, so reloads cannot grow it.
_MAX_KEYS = 64


class ConnectionCounts:
    def __init__(self) -> None:
        self._total: dict[SocketKey, int] = {}  # listening socket -> open connections
        # listening socket -> client address -> open connections (an address leaves at zero)
        self._by_address: dict[SocketKey, dict[bytes, int]] = {}
        # id(listener) -> (listener, its socket key): taken twice per connection, made once.
        # The listener is held, so its id cannot be another object's while it is here.
        self._keys: dict[int, tuple[ListenerConfig, SocketKey]] = {}

    def _key(self, listener: ListenerConfig) -> SocketKey:
        known = self._keys.get(id(listener))
        if known is not None and known[0] is listener:
            return known[1]
        if len(self._keys) >= _MAX_KEYS:
            self._keys.clear()
        key = socket_key(listener)
        self._keys[id(listener)] = (listener, key)
        return key

    def admit(self, listener: ListenerConfig, address: bytes) -> Refusal | None:
        """Count a new connection, or return the cap it would pass (not counted then)."""
        name = self._key(listener)
        total = self._total.get(name, 0)
        if total >= listener.max_connections:
            return Refusal.MAX_CONNECTIONS
        addresses = self._by_address.setdefault(name, {})
        count = addresses.get(address, 0)
        if count >= listener.max_connections_per_ip:
            return Refusal.MAX_CONNECTIONS_PER_IP
        self._total[name] = total + 1
        addresses[address] = count + 1
        return None

    def release(self, listener: ListenerConfig, address: bytes) -> None:
        name = self._key(listener)
        self._total[name] -= 1
        addresses = self._by_address[name]
        count = addresses[address] - 1
        if count:
            addresses[address] = count
        else:
            del addresses[address]
