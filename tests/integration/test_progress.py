"""Long waits say what they wait for (module_utils/progress.py): a line on the controller's display, on standard error
(never in the JSON callback's standard output), once the wait has lasted a minute, then when the state changes and at
most once a minute; with -v from the start. Real ansible-playbook / ansible-inventory runs against the emulator."""
import re

from tests.integration.test_mde_investigate_pivot import action_delays, idle_windows_machine

ACTION = "defender.endpoint.mde_machine_action"
AIR = "defender.endpoint.mde_investigation"
LINE = re.compile(r"^defender\.endpoint: task '(?P<task>[^']+)' \(host localhost\) is (?P<verb>waiting|done waiting) "
                  r"for (?P<what>[^:]+): (?P<state>\w+)(?:; waited (?P<waited>[^.]+?) of wait_timeout "
                  r"(?P<limit>[^.]+)| after (?P<after>[^.]+))\.$")


def progress_lines(result):
    lines = [line for line in result.stderr.splitlines() if "waiting for" in line]
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), lines
    return parsed


def seconds(text):
    """``1 min 5 s`` -> 65."""
    total = 0
    for number, unit in re.findall(r"(\d+) (h|min|s)\b", text):
        total += int(number) * {"h": 3600, "min": 60, "s": 1}[unit]
    return total


def polls(emulator, action_id):
    return [e for e in emulator.log if e["method"] == "GET" and e["path"] == "/api/machineactions/%s" % action_id]


def test_a_wait_over_a_minute_says_what_it_waits_for_on_standard_error(ansible, emulator):
    """Pending for 50 s, InProgress for 25 s: the first minute is quiet (the change at 50 s included), then one line
    (InProgress), then the end; the JSON on standard output is whole and carries none of it."""
    machine = next(m for m in emulator.machines if m["onboardingStatus"] == "Onboarded")
    with action_delays(emulator, 50, 25):
        result = ansible.playbook(tasks=[{"name": "isolate and wait", ACTION: {
            "machine_id": machine["id"], "action": "isolate", "comment": "progress", "wait": True}}])
    assert result.rc == 0, result
    task = result.task("isolate and wait")
    assert task["machine_action"]["status"] == "Succeeded"
    assert "waiting for" not in result.stdout
    lines = progress_lines(result)
    assert [(m["verb"], m["state"]) for m in lines] == [("waiting", "InProgress"), ("done waiting", "Succeeded")], lines
    first, last = lines
    assert first["task"] == "isolate and wait" and first["limit"] == "10 min"
    assert first["what"] == "Isolate action %s on %s" % (task["machine_action"]["id"], machine["computerDnsName"])
    assert 60 <= seconds(first["waited"]) < 75 and 75 <= seconds(last["after"]) < 100
    # What the emulator received: the polls of that one action, none more often than the client's back-off allows.
    assert len(polls(emulator, task["machine_action"]["id"])) <= 12


def test_with_v_every_state_change_shows_from_the_start(ansible, emulator):
    machine = next(m for m in emulator.machines if m["onboardingStatus"] == "Onboarded")
    win = idle_windows_machine(emulator, skip=[machine["id"]])
    with action_delays(emulator, 2, 3):
        result = ansible.playbook(tasks=[
            {"name": "scan", ACTION: {"machine_id": machine["id"], "action": "antivirus_scan", "comment": "progress",
                                      "wait": True, "wait_timeout": 120}},
            {"name": "investigate", AIR: {"machine_id": win["id"], "wait": True, "wait_timeout": 120}},
        ], extra_args=["-v"])
    assert result.rc == 0, result
    assert result.data is not None and "waiting for" not in result.stdout
    lines = progress_lines(result)
    scan = [(m["verb"], m["state"]) for m in lines if m["task"] == "scan"]
    assert scan == [("waiting", "Pending"), ("waiting", "InProgress"), ("done waiting", "Succeeded")], lines
    assert [m for m in lines if m["task"] == "scan"][0]["limit"] == "2 min"
    investigation = [(m["verb"], m["state"]) for m in lines if m["task"] == "investigate"]
    assert investigation[0] == ("waiting", "Queued") and ("waiting", "Running") in investigation, lines
    assert investigation[-1][0] == "done waiting" and investigation[-1][1] == \
        result.task("investigate")["investigation"]["state"]


def test_the_inventory_says_how_many_machines_and_pages_it_read(ansible, emulator):
    config = {"plugin": "defender.endpoint.mde_machines"}
    quiet = ansible.inventory(config)
    assert quiet.rc == 0, quiet
    assert "machines (GET /api/machines)" not in quiet.stderr  # a read of a second says nothing by default
    verbose = ansible.inventory(config, extra_args=("--list", "-v"))
    assert verbose.rc == 0, verbose
    hosts = verbose.data["_meta"]["hostvars"]
    assert hosts and "machines (GET /api/machines)" not in verbose.stdout
    said = [line for line in verbose.stderr.splitlines() if "machines (GET /api/machines)" in line]
    first = re.match(r"defender\.endpoint\.mde_machines is waiting for the machines \(GET /api/machines\): reading "
                     r"\((\d+) machines in 1 page so far\); waited 0 s\.$", said[0])
    last = re.match(r"defender\.endpoint\.mde_machines is done waiting for the machines \(GET /api/machines\): read "
                    r"\((\d+) machines in 1 page\) after \d+ s\.$", said[-1])
    assert first and last and len(said) == 2, said
    # Every machine the API answered (the default filter leaves out long unseen ones), one host each at most.
    assert len(hosts) <= int(last.group(1)) == int(first.group(1)) <= len(emulator.machines)


def test_with_v_a_live_response_session_and_an_indicator_import_say_where_they_are(ansible, emulator):
    from tests.emulator import api_live_response as lr  # pylint: disable=import-outside-toplevel
    lr.put_library_file(emulator, "triage.ps1", b"#mde-emulator: stdout=triage collected\nWrite-Output 'triage'\n")
    machine = next(m for m in emulator.machines if m["onboardingStatus"] == "Onboarded" and m["computerDnsName"]
                   and not m["computerDnsName"].startswith("dup-"))
    indicators = [{"indicator_value": "%040x" % (0xabc000 + n), "indicator_type": "FileSha1", "action": "Audit",
                   "generate_alert": True, "title": "feed %d" % n, "description": "a feed"} for n in range(600)]
    with action_delays(emulator, 1, 2):
        result = ansible.playbook(tasks=[
            {"name": "session", "defender.endpoint.mde_live_response": {
                "machine_id": machine["id"], "commands": [{"type": "RunScript", "script_name": "triage.ps1"}],
                "wait_timeout": 300}},
            {"name": "import", "defender.endpoint.mde_indicator": {"indicators": indicators}},
        ], extra_args=["-v"])
    assert result.rc == 0, result
    assert result.data is not None and "waiting for" not in result.stdout
    session = [line for line in result.stderr.splitlines() if line.startswith("defender.endpoint: task 'session'")]
    assert session and session[-1].startswith("defender.endpoint: task 'session' (host localhost) is done waiting for "
                                              "live response session LiveResponse action ")
    assert session[-1].endswith(": Succeeded after %s." % session[-1].rsplit(" after ", 1)[1][:-1])
    assert any(": Pending; waited " in line or ": InProgress; waited " in line for line in session), session
    imported = [line for line in result.stderr.splitlines() if line.startswith("defender.endpoint: task 'import'")]
    assert imported[0].startswith("defender.endpoint: task 'import' (host localhost) is waiting for the import of 600 "
                                  "indicators in batches of 500: importing (0 of 600 sent); waited "), imported
    assert re.match(r".* is done waiting for the import of 600 indicators in batches of 500: imported \(600 of 600 "
                    r"sent\) after \d+ s\.$", imported[-1]), imported
    assert len([w for w in emulator.writes() if w["path"] == "/api/indicators/import"]) == 2


def test_the_inventory_counts_the_pages_of_the_vulnerability_export(ansible, emulator):
    config = {"plugin": "defender.endpoint.mde_machines", "vulnerabilities": {"enabled": True, "page_size": 50}}
    result = ansible.inventory(config, extra_args=("--list", "-v"))
    assert result.rc == 0 and result.data["_meta"]["hostvars"], result
    said = [line for line in result.stderr.splitlines() if "the vulnerability export" in line]
    last = re.match(r"defender\.endpoint\.mde_machines is done waiting for the vulnerability export \(GET "
                    r"/api/machines/SoftwareVulnerabilitiesByMachine\): read \((\d+) records in (\d+) pages\) after "
                    r"\d+ s\.$", said[-1] if said else "")
    assert last, said
    pages = [e for e in emulator.log if e["path"] == "/api/machines/SoftwareVulnerabilitiesByMachine"]
    assert int(last.group(2)) == len(pages) > 1 and int(last.group(1)) > 50
    assert said[0].startswith("defender.endpoint.mde_machines is waiting for the vulnerability export (GET "
                              "/api/machines/SoftwareVulnerabilitiesByMachine): reading (")
