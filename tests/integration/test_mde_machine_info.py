"""mde_machine_info end to end: real ansible-playbook runs against the emulator, every auth path."""
import os

import pytest

from tests.integration.harness import Ansible

INFO = "defender.endpoint.mde_machine_info"


def onboarded(emulator, **props):
    return {m["id"] for m in emulator.find_machines(onboardingStatus="Onboarded", **props)}


def ids(result):
    return {m["id"] for m in result["machines"]}


def test_filters_go_to_the_api_as_one_filter_and_narrow_exactly(ansible, emulator):
    r = ansible.playbook([
        {"name": "linux", INFO: {"os_platform": "Linux", "onboarding_status": "Onboarded"}, "register": "x"},
        {"name": "servers high", INFO: {"os_platform": ["WindowsServer2019", "WindowsServer2022"],
                                        "exposure_level": ["High", "Medium"]}},
        {"name": "tag", INFO: {"machine_tags": ["VIP"]}},
        {"name": "group", INFO: {"rbac_group_name": ["Servers"], "health_status": "Active"}},
        {"name": "raw", INFO: {"odata_filter": "osPlatform eq 'macOS' or osPlatform eq 'Linux'",
                               "onboarding_status": "Onboarded"}},
        {"name": "limit", INFO: {"limit": 3}},
        {"name": "all", INFO: {}},
    ])
    assert r.rc == 0, r
    assert ids(r.task("linux")) == onboarded(emulator, osPlatform="Linux")
    assert r.task("linux")["filter"] == "osPlatform eq 'Linux' and onboardingStatus eq 'Onboarded'"
    assert r.task("linux")["changed"] is False
    servers = {m["id"] for m in emulator.machines if m["osPlatform"] in ("WindowsServer2019", "WindowsServer2022")
               and m["exposureLevel"] in ("High", "Medium")}
    assert servers and ids(r.task("servers high")) == servers
    assert ids(r.task("tag")) == {m["id"] for m in emulator.machines if "VIP" in (m["machineTags"] or [])}
    assert ids(r.task("group")) == {m["id"] for m in emulator.machines
                                    if m["rbacGroupName"] == "Servers" and m["healthStatus"] == "Active"}
    assert ids(r.task("raw")) == onboarded(emulator, osPlatform="Linux") | onboarded(emulator, osPlatform="macOS")
    assert r.task("raw")["filter"] == "onboardingStatus eq 'Onboarded' and (osPlatform eq 'macOS' or osPlatform eq 'Linux')"
    assert len(r.task("limit")["machines"]) == 3
    assert len(r.task("all")["machines"]) == len(emulator.machines)
    # Every filter was sent to the API, one list call per task (50 machines fit one page).
    filters = [e["query"].get("$filter") for e in emulator.log if e["path"] == "/api/machines"]
    assert "machineTags/any(t: t eq 'VIP')" in filters
    assert all(e["method"] == "GET" for e in emulator.log if e["path"].startswith("/api/"))


def test_by_id_and_by_name(ansible, emulator):
    m0 = emulator.machines[0]
    r = ansible.playbook([
        {"name": "by id", INFO: {"machine_id": m0["id"]}},
        {"name": "by name", INFO: {"machine_name": m0["computerDnsName"].upper()}},
        {"name": "by short name", INFO: {"machine_name": m0["computerDnsName"].split(".")[0]}},
        {"name": "duplicates", INFO: {"machine_name": "dup-00002.contoso.local"}},
        {"name": "unknown id", INFO: {"machine_id": "0" * 40}, "ignore_errors": True},
    ])
    assert r.rc == 0, r
    assert r.task("by id")["machines"] == [m0]
    assert ids(r.task("by name")) == ids(r.task("by short name")) == {m0["id"]}
    assert len(r.task("duplicates")["machines"]) == 2
    failed = r.task("unknown id")
    assert failed["failed"] and failed["msg"] == "No machine with id %s in Defender for Endpoint." % ("0" * 40)


@pytest.mark.parametrize("app", ["full", "cert", "cert_encrypted"])
def test_each_credential_kind(ansible, emulator, app):
    r = ansible.playbook([{"name": "read", INFO: {"limit": 1}}], app=app)
    assert r.rc == 0, r
    assert len(r.task("read")["machines"]) == 1
    token_calls = [e for e in emulator.log if e["path"].endswith("/oauth2/v2.0/token")]
    assert len(token_calls) == 1 and token_calls[0]["client_id"] == emulator.apps[app]["client_id"]


def test_ready_access_token_skips_msal(ansible, emulator):
    token = emulator.token_for("readonly")
    r = ansible.playbook([{"name": "read", INFO: {"limit": 2}}],
                         env={"MDE_ACCESS_TOKEN": token, "MDE_CLIENT_SECRET": None, "MDE_TENANT_ID": None,
                              "MDE_CLIENT_ID": None})
    assert r.rc == 0, r
    assert len(r.task("read")["machines"]) == 2
    assert emulator.counters["token_requests"] == 0


def test_module_defaults_group_sets_credentials_once(ansible, emulator):
    app = emulator.apps["full"]
    plays = [{
        "name": "module_defaults", "hosts": "localhost", "gather_facts": False,
        "module_defaults": {"group/defender.endpoint.mde": {
            "tenant_id": emulator.tenant_id, "client_id": app["client_id"], "client_secret": app["client_secret"],
            "api_url": emulator.url, "authority_host": emulator.url, "ca_path": emulator.ca_path}},
        "tasks": [{"name": "read", INFO: {"limit": 1}}],
    }]
    r = ansible.playbook(plays=plays, env={"MDE_CLIENT_SECRET": None, "MDE_CLIENT_ID": None, "MDE_TENANT_ID": None,
                                           "MDE_API_URL": None, "MDE_AUTHORITY_HOST": None, "MDE_CA_PATH": None})
    assert r.rc == 0, r
    assert len(r.task("read")["machines"]) == 1


@pytest.fixture
def fast_limits_emulator(tmp_path_factory):
    """An emulator whose rate-limit windows last a tenth of the documented ones (a "minute" is 6 s)."""
    from tests.emulator import Emulator
    emu = Emulator(state_dir=str(tmp_path_factory.mktemp("emu-fast")), machines=50, rate_limit_scale=0.1)
    emu.start()
    yield emu
    emu.stop()


def test_three_tasks_on_fifty_hosts_ask_for_one_token(fast_limits_emulator, tmp_path):
    emulator = fast_limits_emulator
    ansible = Ansible(emulator, tmp_path)
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("[targets]\n" + "".join("h%02d ansible_connection=local\n" % i for i in range(50)))
    r = ansible.playbook([
        {"name": "one", INFO: {"limit": 1}, "delegate_to": "localhost"},
        {"name": "two", INFO: {"os_platform": "Linux", "limit": 1}, "delegate_to": "localhost"},
        {"name": "three", INFO: {"machine_tags": "VIP"}, "delegate_to": "localhost"},
    ], hosts="targets", inventory=str(inventory), forks=10, env={"MDE_RATE_LIMIT_SCALE": "0.1"})
    assert r.rc == 0, r
    assert r.stats and all(s["failures"] == 0 and s["ok"] == 3 for s in r.stats.values())
    assert len(r.stats) == 50
    assert emulator.counters["token_requests"] == 1
    # 150 module runs, one list call each, at 100 calls a (scaled) minute: the forks share the budget and
    # pace themselves, so none fails and the API answered every call without a 429.
    calls = [e for e in emulator.log if e["path"] == "/api/machines"]
    assert len(calls) == 150 and {e["status"] for e in calls} == {200}
    assert calls[-1]["time"] - calls[0]["time"] >= 6.0  # the 101st call waited for the first to leave the window
    cache = os.path.join(ansible.cache_dir, "tokens.json")
    assert oct(os.stat(cache).st_mode & 0o777) == "0o600"


def test_missing_permission_names_it(ansible, emulator):
    r = ansible.playbook([{"name": "read", INFO: {}}], app="noperm")
    assert r.rc != 0
    msg = r.task("read")["msg"]
    assert "HTTP 403" in msg and "Machine.Read.All" in msg
    assert "Traceback" not in r.stdout


@pytest.mark.parametrize("env,expected", [
    ({"MDE_CLIENT_SECRET": "wrong-s3cret-value"}, "AADSTS7000215"),
    ({"MDE_TENANT_ID": "00000000-0000-0000-0000-000000000000"}, "00000000-0000-0000-0000-000000000000"),
    ({"MDE_CLIENT_ID": "11111111-2222-3333-4444-555555555555"}, "AADSTS700016"),
    ({"MDE_ACCESS_TOKEN": "x"}, "Only one credential may be set, got client_secret and access_token"),
    ({"MDE_CLOUD": "mars"}, "cloud"),
    ({"MDE_CA_PATH": None}, "TLS certificate verification failed"),
])
def test_bad_credentials_fail_with_one_clear_sentence(ansible, emulator, env, expected):
    r = ansible.playbook([{"name": "read", INFO: {"limit": 1}}], env=env)
    assert r.rc != 0
    msg = r.task("read")["msg"]
    assert expected in msg, msg
    assert "Traceback" not in msg and "wrong-s3cret-value" not in r.stdout + r.stderr
    assert not [e for e in emulator.log if e["path"].startswith("/api/")]


def test_bad_filter_value_fails_before_any_call(ansible, emulator):
    r = ansible.playbook([
        {"name": "age", INFO: {"last_seen_within": "yesterday"}, "ignore_errors": True},
        {"name": "enum", INFO: {"exposure_level": "Extreme"}, "ignore_errors": True},
        {"name": "both", INFO: {"machine_id": "a", "machine_name": "b"}, "ignore_errors": True},
    ])
    assert "last_seen_within must be an ISO 8601 time" in r.task("age")["msg"]
    assert "exposure_level" in r.task("enum")["msg"] and "Extreme" in r.task("enum")["msg"]
    assert "mutually exclusive" in r.task("both")["msg"]
    assert emulator.log == []


def test_bad_odata_filter_reports_the_api_error(ansible, emulator):
    r = ansible.playbook([{"name": "bad", INFO: {"odata_filter": "nosuchfield eq 'x'"}}])
    msg = r.task("bad")["msg"]
    assert "HTTP 400" in msg and "ODataError" in msg and "GET /api/machines" in msg
