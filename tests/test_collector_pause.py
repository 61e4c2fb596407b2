"""The cycle collector is off exactly while a query's pause is held, and always back on after."""

from __future__ import annotations

import gc
import threading
from contextlib import ExitStack

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregation.collector_pause import collector_paused


@given(st.lists(st.booleans(), max_size=30))
def test_nested_pauses_restore_the_collector(steps: list[bool]) -> None:
    """Any sequence of entering (True) and leaving (False) nested pauses: the collector is off
    while at least one is held and on again once none is."""
    assert gc.isenabled()
    with ExitStack() as outer:
        held: list[ExitStack] = []
        for enter in steps:
            if enter:
                stack = ExitStack()
                stack.enter_context(collector_paused())
                held.append(stack)
            elif held:
                held.pop().close()
            assert gc.isenabled() == (not held)
        for stack in reversed(held):
            outer.push(stack)
    assert gc.isenabled()


def test_an_exception_does_not_leave_the_collector_off() -> None:
    with pytest.raises(RuntimeError), collector_paused():
        assert not gc.isenabled()
        raise RuntimeError("the query failed")
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_overlapping_queries_on_threads() -> None:
    """Two queries whose pauses overlap: the collector comes back only when the second ends."""
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, bool] = {}

    def first() -> None:
        with collector_paused():
            first_in.set()
            second_in.wait(5)
        first_out.set()

    def second() -> None:
        first_in.wait(5)
        with collector_paused():
            second_in.set()
            first_out.wait(5)
            seen["while the second runs"] = gc.isenabled()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert seen == {"while the second runs": False}
    assert gc.isenabled()
