"""progress.Progress: when a long wait speaks, and what it says (the display path is tested in
tests/integration/test_progress.py)."""
from ansible_collections.defender.endpoint.plugins.module_utils.progress import Progress, duration


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def run(updates, end=None, **kwargs):
    clock = Clock()
    lines = []
    progress = Progress(lines.append, kwargs.pop("what", "Isolate action 1 on ws-1"), kwargs.pop("limit", (600, "wait_timeout")),
                        clock=clock, **kwargs)
    for at, state in updates:
        clock.now = 1000.0 + at
        progress.update(state)
    if end is not None:
        clock.now = 1000.0 + end[0]
        progress.done(end[1])
    return lines


def test_quiet_for_a_minute_then_on_each_change_and_once_a_minute():
    lines = run([(0, "Pending"), (40, "InProgress"), (59, "InProgress"), (61, "InProgress"), (90, "InProgress"),
                 (100, "Pending"), (150, "Pending"), (161, "Pending"), (170, "Pending")], end=(175, "Succeeded"))
    assert lines == [
        "waiting for Isolate action 1 on ws-1: InProgress; waited 1 min 1 s of wait_timeout 10 min.",
        "waiting for Isolate action 1 on ws-1: Pending; waited 1 min 40 s of wait_timeout 10 min.",
        "waiting for Isolate action 1 on ws-1: Pending; waited 2 min 41 s of wait_timeout 10 min.",
        "done waiting for Isolate action 1 on ws-1: Succeeded after 2 min 55 s.",
    ]


def test_a_short_wait_says_nothing_not_even_its_end():
    assert run([(0, "Pending"), (30, "InProgress")], end=(59, "Succeeded")) == []


def test_verbose_from_the_first_second():
    lines = run([(0, "Pending"), (2, "Pending"), (3, "InProgress")], end=(5, "Succeeded"), quiet_for=0)
    assert [line.split(": ")[1].split(";")[0] for line in lines] == ["Pending", "InProgress", "Succeeded after 5 s."]


def test_without_a_display_nothing_is_said():
    progress = Progress(None, "x", None, quiet_for=0)
    progress.update("Pending")
    progress.done("Succeeded")
    assert progress.lines == 0


def test_api_text_is_quoted_and_counts_are_no_change():
    lines = run([(0, "Pend\x1b[2Jing"), (61, "Pend\x1b[2Jing")], limit=None)
    assert lines == ["waiting for Isolate action 1 on ws-1: Pend\\x1b[2Jing; waited 1 min 1 s."]
    lines = run([(0, "importing"), (61, "importing"), (70, "importing"), (125, "importing")], limit=None)
    assert len(lines) == 2


def test_duration():
    assert [duration(s) for s in (0, 59.6, 60, 65, 3600, 3725)] == ["0 s", "1 min", "1 min", "1 min 5 s", "1 h", "1 h 2 min"]
