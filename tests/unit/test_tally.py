"""The live tally's throttle: an action that touches its own key (more to do next time, as a refresh
with more :warning: marks to flip than one batch does) gets a trailing run, and never deadlocks."""

from __future__ import annotations

import threading

from bot.tally import Throttle


def test_an_action_that_touches_its_own_key_gets_a_trailing_run_instead_of_a_deadlock() -> None:
    runs: list[int] = []
    second = threading.Event()

    def action(key: int) -> None:
        runs.append(key)
        if len(runs) == 1:
            throttle.touch(key)  # the interval is over already (0): this used to run it right here
        else:
            second.set()

    throttle = Throttle(action, interval=0.0)
    first = threading.Thread(target=throttle.touch, args=(7,), daemon=True)
    first.start()
    first.join(timeout=30)
    assert not first.is_alive(), "the action deadlocked on its own touch"
    assert second.wait(timeout=30) and runs == [7, 7]
