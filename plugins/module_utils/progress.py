# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a long wait says while it waits: a line on the controller's display, so that waiting can be told from hanging.

A machine action ends in minutes, a live response session may take up to 30 minutes
(https://learn.microsoft.com/en-us/defender-endpoint/api/run-live-response), an automated investigation longer
(https://learn.microsoft.com/en-us/defender-endpoint/api/investigation); a large indicator import or inventory reads
for minutes. A ``Progress`` says what is awaited, its state, how long it has waited and the time limit: once the wait
has lasted ``quiet_for`` seconds (a minute by default, so that short waits stay quiet), then whenever the state
changes and at most once every ``every`` seconds otherwise. ``show(line)`` puts it on the display (the action plugin
and the inventory plugin send it to standard error, never into a JSON callback's standard output); with ``show`` None
(module mode) it says nothing. Plain Python: no Ansible import.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.defender.endpoint.plugins.module_utils.errors import for_terminal, quoted

QUIET_FOR = 60.0
EVERY = 60.0


def duration(seconds):
    """``45 s``, ``1 min 5 s``, ``2 h 3 min``."""
    seconds = int(max(0, round(seconds)))
    if seconds < 60:
        return "%d s" % seconds
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return "%d min %d s" % (minutes, seconds) if seconds else "%d min" % minutes
    hours, minutes = divmod(minutes, 60)
    return "%d h %d min" % (hours, minutes) if minutes else "%d h" % hours


class Progress:
    """The lines of one wait. ``what``: what is awaited, already fit for a message (API text through
    errors.quoted); ``limit``: the time limit in seconds and the option that sets it, e.g. ``(600, "wait_timeout")``,
    or None."""

    def __init__(self, show, what, limit=None, quiet_for=QUIET_FOR, every=EVERY, clock=time.monotonic):
        self.show = show
        self.what = what
        self.limit = limit
        self.quiet_for = quiet_for
        self.every = every
        self.clock = clock
        self.started = clock()
        self.state = None
        self.last_line = None
        self.lines = 0

    def update(self, state, detail=None):
        """The state read just now (API text: it is quoted here); ``detail`` (counts) is shown but is no change."""
        now = self.clock()
        changed = state != self.state
        self.state = state
        if self.show is None or now - self.started < self.quiet_for:
            return
        if changed or self.last_line is None or now - self.last_line >= self.every:
            self.last_line = now
            self._say("%s; waited %s%s" % (self._state(state, detail), duration(now - self.started), self._limit()))

    def done(self, state, detail=None):
        """The wait ended: said only when a line was shown during it."""
        if self.show is not None and self.lines:
            self._say("%s after %s" % (self._state(state, detail), duration(self.clock() - self.started)), "done waiting")

    def _state(self, state, detail):
        text = quoted(state, 60) if state is not None else "no state yet"
        return "%s (%s)" % (text, detail) if detail else text

    def _limit(self):
        if not self.limit:
            return ""
        seconds, option = self.limit
        return " of %s %s" % (option, duration(seconds)) if option else " of %s" % duration(seconds)

    def _say(self, text, verb="waiting"):
        self.lines += 1
        self.show(for_terminal("%s for %s: %s." % (verb, self.what, text)))
