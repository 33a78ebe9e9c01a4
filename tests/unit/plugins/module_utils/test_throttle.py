"""The shared call budget: families, limits, waiting, and sharing between processes."""
import errno
import json
import multiprocessing
import os
import stat
import time

import pytest

from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEError
from ansible_collections.defender.endpoint.plugins.module_utils.throttle import (
    MAX_BLOCK,
    RateBudget,
    family,
    limits_for,
)

from tests.unit.helpers import owned_by_another


@pytest.mark.parametrize("method,path,expected", [
    ("POST", "/api/machines/1e5bc9d7e413ddd7902c2932e418702b84d0cc07/isolate", "POST /api/machines/{id}/isolate"),
    ("post", "/api/v1.0/machines/abc/isolate", "POST /api/machines/{id}/isolate"),
    ("GET", "/api/machines?$top=10", "GET /api/machines"),
    ("GET", "/api/machines/findbytag", "GET /api/machines/findbytag"),
    ("GET", "/api/machines/findbyip(ip='10.0.0.1',timestamp=2026-01-01T00:00:00Z)", "GET /api/machines/findbyip(...)"),
    ("POST", "/api/indicators/import", "POST /api/indicators/import"),
    ("GET", "/api/machineactions/7c8f/GetPackageUri", "GET /api/machineactions/{id}/getPackageUri"),
    ("GET", "/api/machines/SoftwareVulnerabilitiesByMachine", "GET /api/machines/SoftwareVulnerabilitiesByMachine"),
    ("GET", "/api/vulnerabilities/machinesVulnerabilities", "GET /api/vulnerabilities/machinesVulnerabilities"),
])
def test_family(method, path, expected):
    assert family(method, path) == expected


def test_documented_limits():
    assert limits_for("POST /api/machines/{id}/isolate") == (100, 1500)
    assert limits_for("POST /api/indicators/import") == (30, 1500)
    assert limits_for("POST /api/alerts/batchUpdate") == (10, 500)
    assert limits_for("GET /api/machineactions/{id}/getPackageUri") == (2, 120)
    assert limits_for("POST /api/advancedqueries/run") == (45, 1500)
    assert limits_for("GET /api/machines/SoftwareVulnerabilitiesByMachine") == (30, 1000)
    assert limits_for("GET /api/machines/{id}/vulnerabilities") == (50, 1500)


class Clock:
    def __init__(self):
        self.now = 1000.0
        self.slept = []

    def time(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def test_waits_for_the_oldest_slot_of_the_minute(tmp_path):
    clock = Clock()
    budget = RateBudget(str(tmp_path), sleep=clock.sleep, clock=clock.time)
    fam = "POST /api/indicators/import"  # 30 a minute
    for _i in range(30):
        budget.acquire("k", fam)
        clock.now += 1
    assert clock.slept == []
    budget.acquire("k", fam)  # the 31st waits until the first (at t=1000) is a minute old
    assert 1060.0 < clock.now <= 1060.3  # a minute after the first, a hair of margin, at most 0.1 s of jitter


def test_a_slot_counts_from_the_answer(tmp_path):
    """The API counts a call when it arrives, after the slot was taken: a call whose answer took 2 s frees
    its slot a minute after the answer, not a minute after it was sent."""
    clock = Clock()
    budget = RateBudget(str(tmp_path), sleep=clock.sleep, clock=clock.time)
    fam = "POST /api/indicators/import"  # 30 a minute
    first = budget.acquire("k", fam)
    clock.now += 2
    budget.settle("k", fam, first)
    for _i in range(29):
        budget.settle("k", fam, budget.acquire("k", fam))
    budget.acquire("k", fam)
    assert 1062.0 < clock.now <= 1062.3


def test_hour_limit(tmp_path):
    clock = Clock()
    budget = RateBudget(str(tmp_path), sleep=clock.sleep, clock=clock.time)
    fam = "POST /api/alerts/batchUpdate"  # 10 a minute, 500 an hour
    for _i in range(500):
        budget.acquire("k", fam)
        clock.now += 6.01
    start = clock.now
    budget.acquire("k", fam)
    assert clock.now - start > 100  # the hour's budget was used: it waited for the oldest minute to age out


def test_a_429_blocks_the_family_for_everyone(tmp_path):
    clock = Clock()
    a = RateBudget(str(tmp_path), sleep=clock.sleep, clock=clock.time)
    b = RateBudget(str(tmp_path), sleep=clock.sleep, clock=clock.time)
    a.blocked("k", "POST /api/machines/{id}/isolate", 20)
    b.acquire("k", "GET /api/machines")  # another family is not blocked
    assert clock.slept == []
    b.acquire("k", "POST /api/machines/{id}/isolate")
    assert 20 <= sum(clock.slept) <= 21.1


def test_scale_shortens_the_windows(tmp_path):
    clock = Clock()
    budget = RateBudget(str(tmp_path), scale=0.01, sleep=clock.sleep, clock=clock.time)
    for _i in range(3):
        budget.acquire("k", "GET /api/machineactions/{id}/getPackageUri")  # 2 a minute
    assert 0.59 <= sum(clock.slept) <= 0.66


def _burst(directory, n, out):
    budget = RateBudget(directory, scale=0.02)  # a minute lasts 1.2 s
    stamps = []
    for _i in range(n):
        slot = budget.acquire("tenant/app", "POST /api/indicators/import")  # 30 a "minute"
        stamps.append(time.time())
        budget.settle("tenant/app", "POST /api/indicators/import", slot)
    out.put(stamps)


def test_processes_share_one_budget(tmp_path):
    out = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_burst, args=(str(tmp_path), 15, out)) for _i in range(4)]
    for p in procs:
        p.start()
    stamps = sorted(t for _i in procs for t in out.get(timeout=60))
    for p in procs:
        p.join(10)
    # 60 calls at 30 a 1.2 s window: at no time more than 30 in any window, so it took at least one window.
    assert len(stamps) == 60
    assert stamps[-1] - stamps[0] >= 1.1
    for i in range(len(stamps) - 30):
        assert stamps[i + 30] - stamps[i] >= 1.2 - 0.01
    assert oct((tmp_path / "ratelimit.json").stat().st_mode & 0o777) == "0o600"


def test_a_refused_call_gives_its_slot_back(tmp_path):
    """The API did not count a call it answered 429: the budget must not either, or the last call of a burst
    waits a whole window longer."""
    clock = Clock()
    budget = RateBudget(str(tmp_path), sleep=clock.sleep, clock=clock.time)
    fam = "POST /api/indicators/import"  # 30 a minute
    slots = []
    for _i in range(30):
        slots.append(budget.acquire("k", fam))
        clock.now += 1
    budget.blocked("k", fam, 2, slot=slots[-1])  # the 30th was refused with Retry-After: 2
    budget.acquire("k", fam)  # its retry: after the Retry-After, not after a minute
    assert clock.now - 1030 <= 3.1


def test_a_call_slower_than_the_window_still_counts_from_its_answer(tmp_path):
    clock = Clock()
    budget = RateBudget(str(tmp_path), sleep=clock.sleep, clock=clock.time)
    fam = "GET /api/machineactions/{id}/getPackageUri"  # 2 a minute
    slow = budget.acquire("k", fam)
    clock.now += 90                       # the answer came after 90 s: the API counted the call within them
    budget.acquire("k", fam)              # the slot of the slow call was forgotten meanwhile ...
    budget.settle("k", fam, slow)         # ... so its answer counts it again, from now
    budget.acquire("k", fam)              # the third waits a minute from the slow call's answer
    assert 1150.0 < clock.now <= 1150.3


# -- a clock that steps back, a damaged or unsafe state file ---------------------------------------------------------
def test_the_longest_block_is_the_longest_retry_after():
    assert MAX_BLOCK == 120


def test_a_clock_stepping_back_does_not_stall_the_calls(tmp_path):
    """A VM snapshot revert or an NTP step puts every recorded time in the future: they are dropped, not waited for."""
    clock = Clock()
    clock.now = 100000.0
    budget = RateBudget(str(tmp_path), sleep=clock.sleep, clock=clock.time)
    for _i in range(100):
        budget.settle("k", "GET /api/machines", budget.acquire("k", "GET /api/machines"))  # 100 a minute
    for _i in range(10):
        budget.acquire("k", "POST /api/alerts/batchUpdate")  # 10 a minute
    budget.blocked("k", "POST /api/machines/{id}/isolate", 30)
    clock.now -= 3600
    assert clock.slept == []
    budget.acquire("k", "GET /api/machines")
    budget.acquire("k", "POST /api/alerts/batchUpdate")
    assert clock.slept == []
    budget.acquire("k", "POST /api/machines/{id}/isolate")  # a block is never longer than the longest Retry-After
    assert sum(clock.slept) <= MAX_BLOCK + 0.1
    state = json.loads((tmp_path / "ratelimit.json").read_text())
    for entry in state.values():
        assert all(t <= clock.now for t in entry["recent"])
        assert all(float(b) <= clock.now for b in entry["hour"])


def test_a_block_is_capped_at_the_longest_retry_after(tmp_path):
    clock = Clock()
    budget = RateBudget(str(tmp_path), sleep=clock.sleep, clock=clock.time)
    budget.blocked("k", "GET /api/machines", 86400)
    budget.acquire("k", "GET /api/machines")
    assert MAX_BLOCK <= sum(clock.slept) <= MAX_BLOCK + 0.1
    # A block written by a process whose clock was a day ahead.
    (tmp_path / "ratelimit.json").write_text(json.dumps(
        {"k|GET /api/machines": {"recent": [], "hour": {}, "blocked_until": clock.now + 86400}}))
    start = clock.now
    budget.acquire("k", "GET /api/machines")
    assert clock.now - start <= MAX_BLOCK + 0.1


@pytest.mark.parametrize("content", [
    '{"k|GET /api/machines": "junk", "x": {"recent": "abc", "hour": [], "blocked_until": "soon"}, '
    '"y": {"recent": [null, "a", 5], "hour": {"z": "1", "7": null}}, "z": null}',
    '[1, 2]',
    '{"k|GET /api/machines": {"recent": [',
])
def test_damaged_entries_are_dropped(tmp_path, content):
    (tmp_path / "ratelimit.json").write_text(content)
    os.chmod(str(tmp_path / "ratelimit.json"), 0o600)
    clock = Clock()
    budget = RateBudget(str(tmp_path), sleep=clock.sleep, clock=clock.time)
    budget.settle("k", "GET /api/machines", budget.acquire("k", "GET /api/machines"))
    budget.blocked("k", "GET /api/machines", 1)
    assert [w for w in budget.warnings if str(tmp_path / "ratelimit.json") in w]
    state = json.loads((tmp_path / "ratelimit.json").read_text())
    assert state["k|GET /api/machines"]["recent"] == [1000.0]


def test_a_directory_in_place_of_the_state_file_falls_back_to_memory(tmp_path):
    os.mkdir(str(tmp_path / "ratelimit.json"))
    clock = Clock()
    budget = RateBudget(str(tmp_path), sleep=clock.sleep, clock=clock.time)
    for _i in range(3):
        budget.acquire("k", "GET /api/machineactions/{id}/getPackageUri")  # 2 a minute: still counted, in memory
    assert 59 < sum(clock.slept) < 61
    assert len(budget.warnings) == 1
    assert str(tmp_path / "ratelimit.json") in budget.warnings[0] and "memory" in budget.warnings[0]


def test_a_read_only_directory_falls_back_to_memory(tmp_path, monkeypatch):
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        if str(path).startswith(str(tmp_path)) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    os.chmod(str(tmp_path), 0o700)
    clock = Clock()
    budget = RateBudget(str(tmp_path), sleep=clock.sleep, clock=clock.time)
    for _i in range(3):
        budget.acquire("k", "GET /api/machineactions/{id}/getPackageUri")
    assert 59 < sum(clock.slept) < 61
    assert len(budget.warnings) == 1 and str(tmp_path) in budget.warnings[0] and "ead-only" in budget.warnings[0]


def test_the_state_file_has_the_checks_of_the_token_cache(tmp_path, monkeypatch):
    clock = Clock()
    RateBudget(str(tmp_path), sleep=clock.sleep, clock=clock.time).acquire("k", "GET /api/machines")
    state = tmp_path / "ratelimit.json"
    os.chmod(str(state), 0o644)
    with pytest.raises(MDEError) as e:
        RateBudget(str(tmp_path), sleep=clock.sleep, clock=clock.time).acquire("k", "GET /api/machines")
    assert "chmod 600" in str(e.value) and "token_cache: false" in str(e.value) and str(state) in str(e.value)
    os.chmod(str(state), 0o600)
    owned_by_another(monkeypatch, state)
    with pytest.raises(MDEError) as e:
        RateBudget(str(tmp_path), sleep=clock.sleep, clock=clock.time).acquire("k", "GET /api/machines")
    assert "owned by uid 4242" in str(e.value) and str(state) in str(e.value)
    monkeypatch.undo()
    os.chmod(str(tmp_path), 0o777)
    with pytest.raises(MDEError) as e:
        RateBudget(str(tmp_path), sleep=clock.sleep, clock=clock.time).acquire("k", "GET /api/machines")
    assert "chmod 700" in str(e.value)


@pytest.mark.parametrize("name", ["ratelimit.json", "ratelimit.lock"])
def test_a_symlink_is_refused_as_a_symlink(tmp_path, name):
    cache, elsewhere = tmp_path / "cache", tmp_path / "passwd"
    os.makedirs(str(cache), 0o700)
    elsewhere.write_text("root:x:0:0:root:/root:/bin/bash\n")
    os.symlink(str(elsewhere), str(cache / name))
    clock = Clock()
    with pytest.raises(MDEError) as e:
        RateBudget(str(cache), sleep=clock.sleep, clock=clock.time).acquire("k", "GET /api/machines")
    assert "symbolic link" in str(e.value) and str(cache / name) in str(e.value) and "chmod" not in str(e.value)
    assert elsewhere.read_text() == "root:x:0:0:root:/root:/bin/bash\n"


def test_a_directory_opened_by_ansible_is_tightened(tmp_path):
    cache = tmp_path / "cache"
    os.makedirs(str(cache / "inventory"))
    os.chmod(str(cache), 0o755)
    clock = Clock()
    budget = RateBudget(str(cache), sleep=clock.sleep, clock=clock.time)
    budget.acquire("k", "GET /api/machines")
    assert stat.S_IMODE(os.stat(str(cache)).st_mode) == 0o700
    assert len(budget.warnings) == 1 and "0755" in budget.warnings[0]
