"""An exchange's progress is a transition table: every move is declared, an undeclared one
raises and changes nothing, every path can end in DONE or ERROR, and the flags the protocols
read are views of it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outwork.http.messages import Framing, RequestHead
from outwork.proxy.exchange import Exchange
from outwork.proxy.exchange_state import (
    ENDS,
    EVENT_TRIGGERED_TRANSITIONS,
    Event,
    ExchangeState,
    IllegalTransition,
    Side,
    State,
)

DECLARED = {side: set(table) for side, table in EVENT_TRIGGERED_TRANSITIONS.items()}


def _head() -> RequestHead:
    return RequestHead(b"POST", b"/", "1.1", [(b"host", b"a")], b"", Framing.LENGTH, 3, True, False)


@given(st.booleans(), st.lists(st.sampled_from(list(Event)), max_size=40))
def test_random_events_stay_in_declared_states_and_can_always_end(
    request_done: bool, events: list[Event]
) -> None:
    state = ExchangeState(request_done)
    for event in events:
        before = (state.request, state.response)
        try:
            state.process(event)
        except IllegalTransition:
            assert (state.request, state.response) == before  # a refused move changes nothing
        assert state.request in DECLARED[Side.REQUEST]
        assert state.response in DECLARED[Side.RESPONSE]
        if state.finished:
            assert state.request in ENDS and state.response in ENDS
    state.process(Event.ABORT)  # from anywhere, giving up ends both sides
    assert state.finished
    assert state.request in ENDS and state.response in ENDS


def test_every_target_is_a_declared_state_and_ends_only_abort() -> None:
    for side, table in EVENT_TRIGGERED_TRANSITIONS.items():
        for state, moves in table.items():
            assert set(moves.values()) <= DECLARED[side]
            if state in ENDS:
                assert moves == {Event.ABORT: state}


def test_a_request_filter_that_waits_parks_the_request_side() -> None:
    state = ExchangeState()
    state.process(Event.REQUEST_FILTER_STOP)
    assert state.request is State.FILTERING_REQUEST_HEAD
    with pytest.raises(IllegalTransition):
        state.process(Event.REQUEST_END)  # reading is paused while a filter waits
    state.process(Event.REQUEST_FILTER_RESUME)
    state.process(Event.REQUEST_END)
    assert state.request is State.DONE


def test_an_undeclared_move_raises() -> None:
    state = ExchangeState()
    state.process(Event.RESPONSE_HEAD)
    state.process(Event.RESPONSE_END)
    with pytest.raises(IllegalTransition):
        state.process(Event.RESPONSE_HEAD)  # one answer per exchange
    with pytest.raises(IllegalTransition):
        ExchangeState().process(Event.RESPONSE_HEAD_UNSENT)


def test_the_exchange_flags_are_views_of_its_state() -> None:
    ex = Exchange(object(), _head(), None)  # type: ignore[arg-type]
    assert not ex.request_done and not ex.response_started and not ex.response_done
    ex.response_started = True
    assert ex.state.response is State.SENDING
    ex.response_started = False  # a head HTTP/2 would not send: a 502 takes its place
    assert ex.state.response is State.IDLE and not ex.response_started
    ex.request_done = True
    ex.request_done = True  # said again: no move
    ex.response_done = True  # a gateway-made answer, written whole
    assert ex.request_done and ex.response_started and ex.response_done
    assert ex.state.finished
    refused = Exchange(object(), None, None, 400)  # type: ignore[arg-type]
    assert refused.request_done
    assert not Exchange(object(), None, None, 400, body_follows=True).request_done  # type: ignore[arg-type]


def _declared_process(
    request: State, response: State, event: Event
) -> tuple[State, State] | tuple[Side]:
    """The move the table declares, read side by side from EVENT_TRIGGERED_TRANSITIONS: the
    new states, or (the first side that refuses it,)."""
    moved = {Side.REQUEST: request, Side.RESPONSE: response}
    for side, table in EVENT_TRIGGERED_TRANSITIONS.items():
        if not any(event in moves for moves in table.values()):
            continue  # the event leaves this side alone
        target = table.get(moved[side], {}).get(event)
        if target is None:
            return (side,)
        moved[side] = target
    return moved[Side.REQUEST], moved[Side.RESPONSE]


@pytest.mark.parametrize("event", list(Event))
def test_process_makes_exactly_the_declared_moves(event: Event) -> None:
    for request in State:
        for response in State:
            state = ExchangeState()
            state.request, state.response = request, response
            expected = _declared_process(request, response, event)
            if len(expected) == 1:
                with pytest.raises(IllegalTransition, match=f"in {expected[0].name} state"):
                    state.process(event)
                assert (state.request, state.response) == (request, response)
            else:
                state.process(event)
                assert (state.request, state.response) == expected
