# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The tenant's API budget, shared by every process on the controller. Plain Python: no Ansible import.

Defender for Endpoint counts calls per application and tenant, per API
(https://learn.microsoft.com/en-us/defender-endpoint/api/api-terms-of-use and each endpoint's page):
100 a minute and 1,500 an hour for most, fewer for a few. With ``forks: 50`` every fork is its own
process, so each would meet HTTP 429 on its own. Instead, every request first takes a slot from a
budget kept in a small file beside the token cache (``ratelimit.json``, mode 0600, read and written
under an exclusive lock), keyed by API host, application and endpoint family: when the last minute's
or hour's slots are used up, the process waits until the oldest one frees instead of sending. A 429
that still comes (another client of the same app, a CPU quota) is recorded as "blocked until" for the
whole family, so the other forks wait for it too instead of each trying and failing.

The file only ever holds times of this controller's clock, which can step back (a VM snapshot reverted, an NTP
step): a time after "now" is dropped when read, and no block lasts more than MAX_BLOCK seconds from now. A damaged
entry is dropped; a file that cannot be used (a directory in its place, a read-only file system) leaves the budget
in this process's memory, with a warning in ``warnings``. Only a file that is not safe to use (another owner,
readable by others, a symbolic link) stops the call, as the token cache does.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math
import numbers
import os
import random
import re
import time

from ansible_collections.defender.endpoint.plugins.module_utils import files
from ansible_collections.defender.endpoint.plugins.module_utils.auth import is_cache_entry
from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEAuthError

HAS_FCNTL = files.HAS_FCNTL

DEFAULT_LIMITS = (100, 1500)
# The longest Retry-After the collection honours (MDEClient's max_retry_after), in seconds: no block recorded in the
# shared file lasts longer, whatever the file says. Retry-After on 429:
# https://learn.microsoft.com/en-us/defender-endpoint/api/common-errors
MAX_BLOCK = 120.0

# (method, path template) -> (calls a minute, calls an hour), as each endpoint's page on
# https://learn.microsoft.com/en-us/defender-endpoint/api/ documents its limitations.
LIMITS = {
    ("GET", "/api/machineactions/{id}/getPackageUri"): (2, 120),
    ("POST", "/api/machines/{id}/runliveresponse"): (10, 1500),
    ("POST", "/api/alerts/batchUpdate"): (10, 500),
    ("POST", "/api/alerts/CreateAlertByReference"): (15, 1500),
    ("POST", "/api/indicators/import"): (30, 1500),
    ("POST", "/api/indicators/BatchDelete"): (30, 1500),
    ("POST", "/api/advancedqueries/run"): (45, 1500),
    # Vulnerability management (tests/emulator/README.md, "Vulnerability management").
    ("GET", "/api/machines/SoftwareVulnerabilitiesByMachine"): (30, 1000),
    ("GET", "/api/machines/{id}/vulnerabilities"): (50, 1500),
    # "50 calls per hour": https://learn.microsoft.com/en-us/defender-endpoint/api/initiate-autoir-investigation
    ("POST", "/api/machines/{id}/startInvestigation"): (50, 50),
    # Microsoft Graph security (tests/emulator/README.md, "Microsoft Graph"): advanced hunting as the Defender hunting
    # API documents it (45 a minute); incidents as the Defender XDR incidents API documents them (50 a minute,
    # 1,500 an hour), Graph itself publishing no per-endpoint figure for them.
    ("POST", "/v1.0/security/runHuntingQuery"): (45, 1500),
    ("GET", "/v1.0/security/incidents"): (50, 1500),
    ("GET", "/v1.0/security/incidents/{id}"): (50, 1500),
    ("PATCH", "/v1.0/security/incidents/{id}"): (50, 1500),
    ("POST", "/v1.0/security/incidents/{id}/comments"): (50, 1500),
    # Custom detection rules, every method and both versions as one family (DETECTION_RULES): Microsoft documents no
    # figure for them; this is the Graph security API's 150 requests a minute per app and tenant
    # (https://learn.microsoft.com/en-us/graph/throttling-limits, "Security detections and incidents service limits").
    ("ANY", "/v1.0/security/rules/detectionRules/{id}"): (150, 9000),
}
DETECTION_RULES = "ANY /v1.0/security/rules/detectionRules/{id}"
# Graph security collections whose next path segment is an entity id.
_GRAPH_COLLECTIONS = ("incidents", "alerts_v2")

_COLLECTIONS = ("machines", "machineactions", "alerts", "indicators", "files", "ips", "domains", "users",
                "vulnerabilities", "recommendations", "software", "libraryfiles", "investigations")
_NOT_IDS = frozenset(["findbytag", "AddOrRemoveTagForMultipleMachines", "import", "BatchDelete", "batchUpdate",
                      "CreateAlertByReference", "run", "$count", "SoftwareVulnerabilitiesByMachine",
                      "SoftwareVulnerabilitiesExport", "SecureConfigurationsAssessmentByMachine",
                      "machinesVulnerabilities"])


def family(method, path):
    """``("POST", "/api/machines/1e5b.../isolate")`` -> ``"POST /api/machines/{id}/isolate"``."""
    path = re.sub(r"^/api/v1\.0/", "/api/", path.split("?", 1)[0])
    parts = path.split("/")
    if len(parts) > 4 and parts[1] in ("v1.0", "beta") and parts[2:5] == ["security", "rules", "detectionRules"]:
        return DETECTION_RULES
    if len(parts) > 4 and parts[1] in ("v1.0", "beta") and parts[2] == "security" and parts[3] in _GRAPH_COLLECTIONS:
        parts[4] = "{id}"
        return "%s %s" % (method.upper(), "/".join(parts))
    if len(parts) > 3 and parts[1] == "api" and parts[2] in _COLLECTIONS:
        seg = parts[3]
        if seg not in _NOT_IDS and not seg.startswith(("findbyip(", "find(")):
            parts[3] = "{id}"
        elif seg.startswith(("findbyip(", "find(")):
            parts[3] = seg.split("(", 1)[0] + "(...)"
    if len(parts) > 4 and parts[4].lower() == "getpackageuri":
        parts[4] = "getPackageUri"
    if len(parts) > 4 and parts[4].lower().startswith("getliveresponseresultdownloadlink("):
        parts[4] = "GetLiveResponseResultDownloadLink(...)"  # one family whatever the command's index
    return "%s %s" % (method.upper(), "/".join(parts))


def limits_for(fam):
    method, template = fam.split(" ", 1)
    return LIMITS.get((method, template), DEFAULT_LIMITS)


def _number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isnan(value)


def _clean_entry(entry, now):
    """A budget entry as read from the file, without what is damaged or in the future; None if it is no entry."""
    if not isinstance(entry, dict):
        return None
    recent, hour, blocked = entry.get("recent", []), entry.get("hour", {}), entry.get("blocked_until", 0)
    if not isinstance(recent, list) or not isinstance(hour, dict) or not _number(blocked):
        return None
    clean = {"recent": [t for t in recent if _number(t) and t <= now], "hour": {}, "blocked_until": 0}
    for start, count in hour.items():
        try:
            begins = float(start)
        except ValueError:
            continue
        if begins <= now and _number(count) and count > 0:
            clean["hour"][start] = count
    clean["blocked_until"] = min(blocked, now + MAX_BLOCK)
    return clean


def _refuse(what):
    """How a StateStore of the token cache's directory refuses a file that is not safe to use."""
    def refuse(error):
        return MDEAuthError("Refusing to use the %s file of the token cache: %s. %s, or set token_cache: false." % (
            what, error.problem, error.remedy[:1].upper() + error.remedy[1:]))
    return refuse


def _slot_list(_key, slots):
    """A key's session slots as read from the file: a list of slot dicts, each with its token; None if it is none."""
    if not isinstance(slots, list):
        return None
    return [s for s in slots if isinstance(s, dict) and isinstance(s.get("token"), str)]


class RateBudget:
    """Slots a minute and an hour per key, in a locked file shared by processes (or in memory).

    ``warnings``: a list (or anything with ``append``) that gets one sentence for each problem with the shared file
    that the budget worked around (falling back to memory, dropping damaged entries, closing the directory's mode);
    the Ansible-facing code shows them. The attribute ``warnings`` is that list.
    """

    def __init__(self, directory=None, scale=1.0, sleep=time.sleep, clock=time.time, max_wait=900, warnings=None):
        self.directory = directory
        self.scale = float(scale)
        self.sleep = sleep
        self.clock = clock
        self.max_wait = max_wait
        self.waited = 0.0
        self.warnings = [] if warnings is None else warnings
        self._store = files.StateStore(directory, "ratelimit", "call budget",
                                       check=lambda _key, entry: _clean_entry(entry, self.clock()),
                                       warnings=self.warnings, may_tighten=is_cache_entry, refuse=_refuse("call budget"))

    @property
    def _in_memory(self):
        return self._store.in_memory

    def _locked(self, update):
        """Run ``update(state) -> result`` on the shared state under the lock, saving it afterwards."""
        return self._store.update(update)

    # -- the budget ---------------------------------------------------------------------------------
    def _try_take(self, key, per_minute, per_hour):
        minute, hour = 60.0 * self.scale, 3600.0 * self.scale
        bucket_width = minute

        def update(state):
            now = self.clock()
            entry = _clean_entry(state.get(key), now) or {"recent": [], "hour": {}, "blocked_until": 0}
            state[key] = entry
            # Forget keys nobody used for an hour, so the file stays small.
            for k in [k for k, v in state.items() if k != key and max(v.get("recent") or [0]) < now - hour
                      and v.get("blocked_until", 0) < now]:
                del state[k]
            # Times after now were recorded before the clock stepped back: dropped, or they would stall every call.
            recent = sorted(t for t in entry["recent"] if now - minute < t <= now)
            buckets = dict((b, n) for b, n in entry["hour"].items() if now - hour < float(b) <= now)
            entry["blocked_until"] = min(entry["blocked_until"], now + MAX_BLOCK)
            entry["recent"], entry["hour"] = recent, buckets
            wait = 0.0
            if entry["blocked_until"] > now:
                wait = entry["blocked_until"] - now
            elif len(recent) >= per_minute:
                # A settled slot's time is when its answer came, so the API counted the call before it: a minute
                # after it, the call has left the API's window. A hair more for clocks that tick coarsely.
                wait = recent[len(recent) - per_minute] + minute + min(0.02, 0.002 * minute) - now
            elif sum(buckets.values()) >= per_hour:
                wait = min(float(b) for b in buckets) + hour - now
            if wait > 0:
                return wait
            recent.append(now)
            start = repr(now - (now % bucket_width))
            buckets[start] = buckets.get(start, 0) + 1
            return -now  # taken: the slot's time (negative, so that it reads as "no wait")

        return self._locked(update)

    def acquire(self, key, fam):
        """Block until the family's budget has a slot for one call, then take it; return the slot's time."""
        per_minute, per_hour = limits_for(fam)
        deadline = self.clock() + self.max_wait
        while True:
            wait = self._try_take("%s|%s" % (key, fam), per_minute, per_hour)
            if wait <= 0:
                return -wait
            if self.clock() + wait > deadline:
                wait = max(0.0, deadline - self.clock())
                if wait <= 0:
                    return None  # waited long enough: let the API decide (429 is retried anyway)
            # A little jitter, so the forks that waited for the same slot do not all wake at once.
            pause = wait + random.uniform(0, min(0.02, 0.002 * 60.0 * self.scale + 0.005))
            self.waited += pause
            self.sleep(pause)

    def settle(self, key, fam, slot):
        """The call that took ``slot`` has its answer: move the slot to now.

        The API counts a call when it arrives, which is after the slot was taken (a new TLS connection, a
        fork that lost the CPU) and before its answer came. Counting from the answer, the budget never
        frees a slot before the API does, so the next window's first call needs no guessed margin.
        """
        if slot is None:
            return
        now = self.clock()

        def update(state):
            entry = state.setdefault("%s|%s" % (key, fam), {"recent": [], "hour": {}, "blocked_until": 0})
            recent = entry.setdefault("recent", [])
            if slot in recent:
                recent[recent.index(slot)] = max(slot, now)
            else:  # a call slower than the window: its slot was already forgotten, but the API still counts it
                recent.append(now)

        self._locked(update)

    def blocked(self, key, fam, seconds, slot=None):
        """Record a 429's Retry-After for every process using this family.

        ``slot``: the time of the slot the refused call took. The API did not count that call, so neither
        does the budget: a phantom slot would push the family's last call of a burst into the next window.
        """
        until = self.clock() + min(float(seconds), MAX_BLOCK)

        def update(state):
            entry = state.setdefault("%s|%s" % (key, fam), {"recent": [], "hour": {}, "blocked_until": 0})
            entry["blocked_until"] = max(entry.get("blocked_until", 0), until)
            if slot is not None and slot in entry.get("recent", []):
                entry["recent"].remove(slot)
                start = repr(slot - (slot % (60.0 * self.scale)))
                if entry.get("hour", {}).get(start):
                    entry["hour"][start] -= 1

        self._locked(update)


# -- concurrent sessions ----------------------------------------------------------------------------------------------


def process_start(pid):
    """When process ``pid`` started (clock ticks since boot, /proc/<pid>/stat field 22), so that a pid the system
    gave to a new process is not taken for the old one; None where /proc does not say."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            text = f.read().decode("ascii", "replace")
        return int(text[text.rindex(")") + 2:].split()[19])
    except (IOError, OSError, ValueError, IndexError):
        return None


def process_alive(pid, start):
    """Whether the process that recorded ``(pid, start)`` is still running."""
    try:
        os.kill(pid, 0)
    except OSError as e:
        if getattr(e, "errno", None) == 1:  # EPERM: it exists, another user's
            return start is None
        return False
    return start is None or process_start(pid) in (None, start)


class SessionSlots:
    """At most ``limit`` sessions at a time per key, across every process of the controller.

    For APIs that cap concurrent work as well as calls: live response allows 25 concurrently running sessions per
    tenant (https://learn.microsoft.com/en-us/defender-endpoint/api/run-live-response, "Limitations"). A process
    takes a slot before it starts a session and gives it back once the session is final. Each slot records the
    process that holds it (pid and start time), so the slots of a process that died are taken back by the next one
    that looks. A slot handed over to a session that goes on without its process (a task that does not wait) records
    the session's id and a lease: it is free once the lease has ended, or once ``verify`` (a function of the held
    session ids returning those that are final) says the session is over.

    The slots live in ``sessions.json`` beside the call budget (mode 0600, under ``sessions.lock``); without a
    directory, or when it cannot be used, they are this process's own (as the budget falls back to memory).
    """

    def __init__(self, directory=None, sleep=time.sleep, clock=time.time, warnings=None, poll=0.25):
        self.directory = directory
        self.sleep = sleep
        self.clock = clock
        self.poll = poll
        self.warnings = [] if warnings is None else warnings
        self._store = files.StateStore(directory, "sessions", "session slots", check=_slot_list, warnings=self.warnings,
                                       may_tighten=is_cache_entry, refuse=_refuse("session slots"))
        self.waited = 0.0

    @property
    def _in_memory(self):
        return self._store.in_memory

    def _locked(self, update):
        return self._store.update(update)

    def _live(self, slot, now):
        if not isinstance(slot, dict):
            return False
        if _number(slot.get("lease_until")) and slot["lease_until"] > now:
            return True
        pid = slot.get("pid")
        return isinstance(pid, int) and not slot.get("lease_until") and process_alive(pid, slot.get("start"))

    def acquire(self, key, limit, timeout=3600.0, verify=None, what="sessions", progress=None):
        """Block until fewer than ``limit`` slots of ``key`` are held, then take one; return its token.

        ``verify(session_ids) -> final ids``: asked, at most every 10 seconds while waiting, about the sessions
        whose slots are held by a lease only. ``progress`` (progress.Progress) is told how many are held while this
        waits. Raises MDEError after ``timeout`` seconds of waiting."""
        import uuid
        from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEError
        token = uuid.uuid4().hex
        pid = os.getpid()
        me = {"pid": pid, "start": process_start(pid), "since": None}
        started = self.clock()
        last_verify = None
        while True:
            now = self.clock()

            def update(state):
                held = [s for s in state.get(key, []) if self._live(s, now)]
                state[key] = held
                if len(held) < limit:
                    held.append(dict(me, token=token, since=now))
                    return None
                return [s.get("session") for s in held if s.get("lease_until") and s.get("session")]

            leased = self._locked(update)
            if leased is None:
                if progress is not None:
                    progress.done("a slot is free")
                return token
            if progress is not None:
                progress.update("all %d in use" % limit)
            if now - started > timeout:
                raise MDEError("%d %s were already running from this controller for %d seconds; none was started." % (
                    limit, what, int(now - started)))
            if verify is not None and leased and (last_verify is None or now - last_verify >= 10):
                last_verify = now
                final = set(verify(leased) or ())
                if final:
                    self._locked(lambda state: state.__setitem__(key, [
                        s for s in state.get(key, []) if s.get("session") not in final]))
                    continue
            pause = self.poll + random.uniform(0, self.poll)
            self.waited += pause
            self.sleep(pause)

    def release(self, key, token):
        """Give the slot back."""
        self._locked(lambda state: state.__setitem__(key, [s for s in state.get(key, []) if s.get("token") != token]))

    def hand_over(self, key, token, session_id, lease):
        """The session goes on without this process: its slot is held for ``lease`` seconds more (or until verify()
        finds the session final)."""
        until = self.clock() + lease

        def update(state):
            for slot in state.get(key, []):
                if slot.get("token") == token:
                    slot.update(session=session_id, lease_until=until)

        self._locked(update)
