"""An exchange's progress as a transition table (h11's `_state.py` is the model).

Two sides move independently, as in h11: the REQUEST side (the client's request, head then
body) and the RESPONSE side (the answer, made by an upstream or by the gateway). Each is in one
declared state; an event moves it along `EVENT_TRIGGERED_TRANSITIONS`, and an event the table
does not list for the current state raises `IllegalTransition` (a bug in the caller, never
something a peer can cause by itself). `DONE` and `ERROR` are the two ends of each side; an
exchange is finished when both sides are at an end.

The `FILTERING_*` states are where an exchange waits for a filter that returned `Stop` (a
lookup, a timer, a body to inspect) until the filter resumes it; reading the client is paused
meanwhile, so the request side cannot end while its head is being filtered.
"""

from __future__ import annotations

from enum import Enum
from typing import Final


class _FastEnum(Enum):
    # Enum hashes by name in Python code; members are singletons compared by identity, so the
    # identity hash is equivalent and stays in C. The tables below are looked up a few times
    # per exchange (it was 26 Python calls per keep-alive request).
    __hash__ = object.__hash__


class Side(_FastEnum):
    REQUEST = "request"
    RESPONSE = "response"


class State(_FastEnum):
    # Request side.
    RECEIVING = "receiving"  # the head is in; body bytes may follow
    FILTERING_REQUEST_HEAD = "filtering_request_head"  # a request filter waits; reading paused
    # Response side.
    IDLE = "idle"  # nothing of the answer sent yet
    FILTERING_RESPONSE_HEAD = "filtering_response_head"  # a response filter waits
    SENDING = "sending"  # the answer's head is out; its body follows
    # Both sides' ends.
    DONE = "done"
    ERROR = "error"  # given up: the peer went away, or the stream was cut


class Event(_FastEnum):
    REQUEST_FILTER_STOP = "request_filter_stop"
    REQUEST_FILTER_RESUME = "request_filter_resume"
    REQUEST_END = "request_end"  # the request's last body byte (or no body) is in
    RESPONSE_FILTER_STOP = "response_filter_stop"
    RESPONSE_FILTER_RESUME = "response_filter_resume"
    RESPONSE_HEAD = "response_head"  # the answer's head is written
    # The head could not be put on the wire (HTTP/2 refused a header the upstream sent): the
    # answer is not started after all, and a gateway-made 502 takes its place.
    RESPONSE_HEAD_UNSENT = "response_head_unsent"
    RESPONSE_END = "response_end"  # the answer's last byte is written (or queued)
    ABORT = "abort"  # the exchange is given up; a side already DONE stays DONE


# Enum members as module constants on the per-request path: `Enum.X` goes through
# EnumType.__getattr__'s slot (about 10x a global's cost in Python 3.11).
# Each its own `Final` line: mypyc keeps a Final module name in a C static, but looks a name
# assigned by tuple unpacking up in the module's dict at every use (~130 instructions).
_RECEIVING: Final = State.RECEIVING
_IDLE: Final = State.IDLE
_DONE: Final = State.DONE

INITIAL: Final = {Side.REQUEST: State.RECEIVING, Side.RESPONSE: State.IDLE}
ENDS: Final = frozenset({State.DONE, State.ERROR})

EVENT_TRIGGERED_TRANSITIONS: Final[dict[Side, dict[State, dict[Event, State]]]] = {
    Side.REQUEST: {
        State.RECEIVING: {
            Event.REQUEST_FILTER_STOP: State.FILTERING_REQUEST_HEAD,
            Event.REQUEST_END: State.DONE,
            Event.ABORT: State.ERROR,
        },
        State.FILTERING_REQUEST_HEAD: {
            Event.REQUEST_FILTER_RESUME: State.RECEIVING,
            Event.ABORT: State.ERROR,
        },
        State.DONE: {Event.ABORT: State.DONE},
        State.ERROR: {Event.ABORT: State.ERROR},
    },
    Side.RESPONSE: {
        State.IDLE: {
            Event.RESPONSE_FILTER_STOP: State.FILTERING_RESPONSE_HEAD,
            Event.RESPONSE_HEAD: State.SENDING,
            # A gateway-made answer is written whole, head and body at once.
            Event.RESPONSE_END: State.DONE,
            Event.ABORT: State.ERROR,
        },
        State.FILTERING_RESPONSE_HEAD: {
            Event.RESPONSE_FILTER_RESUME: State.IDLE,
            Event.ABORT: State.ERROR,
        },
        State.SENDING: {
            Event.RESPONSE_HEAD_UNSENT: State.IDLE,
            Event.RESPONSE_END: State.DONE,
            Event.ABORT: State.ERROR,
        },
        State.DONE: {Event.ABORT: State.DONE},
        State.ERROR: {Event.ABORT: State.ERROR},
    },
}

# Which side each event moves (ABORT moves both).
EVENT_SIDES: Final[dict[Event, tuple[Side, ...]]] = {
    event: tuple(
        side
        for side, table in EVENT_TRIGGERED_TRANSITIONS.items()
        if any(event in moves for moves in table.values())
    )
    for event in Event
}


def _side_moves(side: Side, event: Event) -> dict[State, State] | None:
    """The moves `event` makes on `side`, by current state; None when it leaves `side` alone."""
    if side not in EVENT_SIDES[event]:
        return None
    table = EVENT_TRIGGERED_TRANSITIONS[side]
    return {state: moves[event] for state, moves in table.items() if event in moves}


# The table above by event: (request side's moves, response side's moves). `process` looks the
# event up once and each side's state once (the nested table took three lookups a side).
_MOVES: Final[dict[Event, tuple[dict[State, State] | None, dict[State, State] | None]]] = {
    event: (_side_moves(Side.REQUEST, event), _side_moves(Side.RESPONSE, event)) for event in Event
}


class IllegalTransition(Exception):
    """An event the current state does not accept: a bug in the caller."""


class ExchangeState:
    __slots__ = ("request", "response")

    def __init__(self, request_done: bool = False) -> None:
        self.request = _DONE if request_done else _RECEIVING
        self.response = _IDLE

    def process(self, event: Event) -> None:
        """Move the side(s) `event` concerns, or raise (leaving every side as it was)."""
        request_moves, response_moves = _MOVES[event]
        request, response = self.request, self.response
        if request_moves is not None:
            target = request_moves.get(request)
            if target is None:
                raise IllegalTransition(f"{event.name} in REQUEST state {request.name}")
            request = target
        if response_moves is not None:
            target = response_moves.get(response)
            if target is None:
                raise IllegalTransition(f"{event.name} in RESPONSE state {response.name}")
            response = target
        # Both sides move together, after every check passed.
        self.request, self.response = request, response

    @property
    def finished(self) -> bool:
        return self.request in ENDS and self.response in ENDS

    def __repr__(self) -> str:
        return f"<ExchangeState request={self.request.name} response={self.response.name}>"
