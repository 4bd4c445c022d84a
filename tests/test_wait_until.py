"""tests/conftest.py's wait_until: the first truthy value of the predicate, or an AssertionError
naming what it waited for once the timeout passes; a predicate's own error stops the wait."""
import pytest

from tests.conftest import wait_until


def test_returns_the_first_truthy_value():
    calls = iter([0, None, "", "ready", "later"])
    assert wait_until(lambda: next(calls), timeout=5, what="the value", interval=0) == "ready"


def test_times_out_naming_what_it_waited_for():
    calls = []
    with pytest.raises(AssertionError, match=r"timed out after 0.05s waiting for the server to start"):
        wait_until(lambda: calls.append(1), timeout=0.05, what="the server to start", interval=0.01)
    assert len(calls) >= 2  # it polled, then gave up


def test_a_predicate_that_fails_stops_the_wait():
    def dead():
        raise AssertionError("the process exited with 1")

    with pytest.raises(AssertionError, match="exited with 1"):
        wait_until(dead, timeout=60, what="anything")
