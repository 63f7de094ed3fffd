"""Open client connections per listener and per client address, and the caps on them.

One `ConnectionCounts` lives as long as the process serves: a reload builds a new gateway
state while the old one's connections drain, and those still hold their slots, so the counts
must not start again from zero with each state.
"""

from __future__ import annotations

from outwork.policy.config import ListenerConfig


class ConnectionCounts:
    def __init__(self) -> None:
        self._total: dict[str, int] = {}  # listener name -> open connections
        # listener name -> client address -> open connections (an address leaves at zero)
        self._by_address: dict[str, dict[bytes, int]] = {}

    def admit(self, listener: ListenerConfig, address: bytes) -> str | None:
        """Count a new connection, or return the cap it would pass (not counted then)."""
        name = listener.name
        total = self._total.get(name, 0)
        if total >= listener.max_connections:
            return "max_connections"
        addresses = self._by_address.setdefault(name, {})
        count = addresses.get(address, 0)
        if count >= listener.max_connections_per_ip:
            return "max_connections_per_ip"
        self._total[name] = total + 1
        addresses[address] = count + 1
        return None

    def release(self, listener: ListenerConfig, address: bytes) -> None:
        name = listener.name
        self._total[name] -= 1
        addresses = self._by_address[name]
        count = addresses[address] - 1
        if count:
            addresses[address] = count
        else:
            del addresses[address]
