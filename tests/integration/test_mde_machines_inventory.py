"""The mde_machines inventory plugin through real `ansible-inventory` runs against the emulator (50 machines, seed 1).

Expected hosts are computed from the emulator's own machine list, and the request log shows what was asked.
Several inventory sources in one run (each putting its hosts in its own group) keep the number of runs small.
"""
import datetime
import json
import os

import yaml

PLUGIN = "defender.endpoint.mde_machines"


def onboarded(machines):
    return [m for m in machines if m["onboardingStatus"] == "Onboarded"]


def parse_time(text):
    return datetime.datetime.fromisoformat(text[:26] + "+00:00")


def expected_names(machines):
    """Default hostnames (computer_dns_name, then id); on a clash the most recently seen machine keeps the name."""
    chosen = {}
    for m in machines:
        name = m["computerDnsName"] or m["id"]
        if name not in chosen or parse_time(m["lastSeen"]) > parse_time(chosen[name]["lastSeen"]):
            chosen[name] = m
    return dict((name, m["id"]) for name, m in chosen.items())


def plain(value):
    """ansible-inventory (ansible-core >= 2.19) marks strings from the API as {"__ansible_unsafe": ...}: unwrap them."""
    if isinstance(value, dict):
        if list(value) == ["__ansible_unsafe"]:
            return value["__ansible_unsafe"]
        return dict((k, plain(v)) for k, v in value.items())
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def inventory(ansible, config, **kwargs):
    result = ansible.inventory(config, **kwargs)
    result.data = plain(result.data)
    return result


def machine_lists(emulator):
    return [e for e in emulator.log if e["method"] == "GET" and e["path"] == "/api/machines"]


def run_sources(ansible, sources, env=None, app=None):
    """One ansible-inventory run over several config files; each source's hosts go to group ``src_<name>``."""
    paths = []
    for name, config in sources.items():
        config = dict({"plugin": PLUGIN, "groups": {"src_" + name: "true"}}, **config)
        path = ansible.tmp_path / ("%s_mde.yml" % name)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        paths.append(str(path))
    args = []
    for path in paths[1:]:
        args += ["-i", path]
    first = yaml.safe_load(open(paths[0]))
    return inventory(ansible, first, name=os.path.basename(paths[0]), extra_args=args + ["--list"], env=env, app=app)


def group_hosts(data, group):
    return sorted((data.get(group) or {}).get("hosts", []))


def test_default_onboarded_names_duplicates_and_hostvars(ansible, emulator):
    result = inventory(ansible, {"plugin": PLUGIN})
    assert result.rc == 0, result
    hostvars = result.data["_meta"]["hostvars"]
    machines = emulator.machines
    expected = expected_names(onboarded(machines))
    assert sorted(hostvars) == sorted(expected)
    assert dict((h, v["mde_id"]) for h, v in hostvars.items()) == expected
    # devices Defender only discovered are not hosts
    not_onboarded = [m["id"] for m in machines if m["onboardingStatus"] != "Onboarded"]
    assert len(not_onboarded) == 3
    assert not set(not_onboarded) & set(v["mde_id"] for v in hostvars.values())
    # machine 1 has no computerDnsName: named by its id
    assert machines[1]["computerDnsName"] is None and machines[1]["id"] in hostvars
    # machines 2 and 3 share a name; 3 was seen more recently and keeps it; the warning names 2
    assert hostvars["dup-00002.contoso.local"]["mde_id"] == machines[3]["id"]
    warning = [line for line in result.messages if machines[2]["id"] in line]
    assert len(warning) == 1 and "left out" in warning[0] and machines[3]["id"] in warning[0]
    # every Machine property as mde_<snake_case>, values as the API sends them
    m0 = hostvars["ws-00000.contoso.local"]
    assert m0["mde_id"] == machines[0]["id"]
    assert m0["mde_computer_dns_name"] == "ws-00000.contoso.local"
    assert m0["mde_os_platform"] == "Windows10"
    assert m0["mde_health_status"] == "Active"
    assert m0["mde_machine_tags"] == ["Finance", "VIP"]
    assert m0["mde_last_ip_address"] == machines[0]["lastIpAddress"]
    assert m0["mde_last_external_ip_address"] == machines[0]["lastExternalIpAddress"]
    assert m0["mde_aad_device_id"] == machines[0]["aadDeviceId"]
    assert m0["mde_rbac_group_id"] == 140 and m0["mde_is_aad_joined"] is True
    assert m0["mde_ip_addresses"] == machines[0]["ipAddresses"]
    assert len([k for k in m0 if k.startswith("mde_")]) == len(machines[0])
    # one listing with the default server-side filter, pages of 10,000, one token
    lists = machine_lists(emulator)
    assert len(lists) == 1
    assert lists[0]["query"]["$filter"] == "onboardingStatus eq 'Onboarded'"
    assert lists[0]["query"]["$top"] == "10000"
    assert emulator.counters["token_requests"] == 1


def test_each_filter(ansible, emulator):
    now = datetime.datetime.now(datetime.timezone.utc)
    sources = {
        "os": {"filters": {"os_platform": ["Linux", "macOS"]}},
        "health": {"filters": {"health_status": "Active"}},
        "onboarding": {"filters": {"onboarding_status": ["CanBeOnboarded", "Unsupported"]}},
        "everything": {"filters": {"onboarding_status": []}},
        "exposure": {"filters": {"exposure_level": "High"}},
        "risk": {"filters": {"risk_score": ["High", "Medium"]}},
        "rbac": {"filters": {"rbac_group_name": ["Servers"], "os_platform": "WindowsServer2022"}},
        "tags": {"filters": {"machine_tags": "VPN"}},
        "recent": {"filters": {"last_seen_within": "7d"}},
        "odata": {"odata_filter": "deviceValue eq 'High'", "filters": {"health_status": ["Active", "Inactive"]}},
        "exclude": {"exclude_filters": [{"os_platform": "Windows10"},
                                        {"machine_tags": "Finance", "health_status": "Active"}]},
    }
    result = run_sources(ansible, sources)
    assert result.rc == 0, result
    data = result.data
    ms = emulator.machines
    on = onboarded(ms)

    def names(selected):
        return sorted(expected_names(selected))

    assert group_hosts(data, "src_os") == names([m for m in on if m["osPlatform"] in ("Linux", "macOS")])
    assert group_hosts(data, "src_health") == names([m for m in on if m["healthStatus"] == "Active"])
    assert group_hosts(data, "src_onboarding") == names(
        [m for m in ms if m["onboardingStatus"] in ("CanBeOnboarded", "Unsupported")])
    assert group_hosts(data, "src_everything") == names(ms)
    assert group_hosts(data, "src_exposure") == names([m for m in on if m["exposureLevel"] == "High"])
    assert group_hosts(data, "src_risk") == names([m for m in on if m["riskScore"] in ("High", "Medium")])
    assert group_hosts(data, "src_rbac") == names(
        [m for m in on if m["rbacGroupName"] == "Servers" and m["osPlatform"] == "WindowsServer2022"])
    assert group_hosts(data, "src_tags") == names([m for m in on if "VPN" in m["machineTags"]])
    assert group_hosts(data, "src_odata") == names(
        [m for m in on if m["deviceValue"] == "High" and m["healthStatus"] in ("Active", "Inactive")])
    assert group_hosts(data, "src_exclude") == names(
        [m for m in on if m["osPlatform"] != "Windows10"
         and not ("Finance" in m["machineTags"] and m["healthStatus"] == "Active")])
    recent = set(group_hosts(data, "src_recent"))
    margin = datetime.timedelta(minutes=2)
    assert set(names([m for m in on if parse_time(m["lastSeen"]) > now - datetime.timedelta(days=7) + margin])) <= recent
    assert recent <= set(names([m for m in on if parse_time(m["lastSeen"]) > now - datetime.timedelta(days=7) - margin]))
    for group in ("src_os", "src_onboarding", "src_rbac", "src_tags", "src_recent", "src_exclude", "src_odata"):
        assert group_hosts(data, group), group  # each filter selects something, and not everything
        assert len(group_hosts(data, group)) < len(ms), group

    # what the API was asked: one server-side $filter per source; rbac_group_name and exclusions are not in it
    filters = sorted(e["query"].get("$filter", "") for e in machine_lists(emulator))
    assert len(filters) == len(sources)
    assert "(osPlatform eq 'Linux' or osPlatform eq 'macOS') and onboardingStatus eq 'Onboarded'" in filters
    assert "healthStatus eq 'Active' and onboardingStatus eq 'Onboarded'" in filters
    assert "(onboardingStatus eq 'CanBeOnboarded' or onboardingStatus eq 'Unsupported')" in filters
    assert "" in filters  # onboarding_status: [] -> no filter at all
    assert "onboardingStatus eq 'Onboarded' and exposureLevel eq 'High'" in filters
    assert "onboardingStatus eq 'Onboarded' and (riskScore eq 'High' or riskScore eq 'Medium')" in filters
    assert "osPlatform eq 'WindowsServer2022' and onboardingStatus eq 'Onboarded'" in filters
    assert "onboardingStatus eq 'Onboarded' and machineTags/any(t: t eq 'VPN')" in filters
    assert [f for f in filters if f.startswith("onboardingStatus eq 'Onboarded' and lastSeen ge 20")]
    assert ("(healthStatus eq 'Active' or healthStatus eq 'Inactive') and onboardingStatus eq 'Onboarded' "
            "and (deviceValue eq 'High')") in filters
    assert filters.count("onboardingStatus eq 'Onboarded'") == 1  # the exclude source
    assert emulator.counters["token_requests"] == 1


def test_keyed_groups_compose_and_templated_secret(ansible, emulator):
    config = {
        "plugin": PLUGIN,
        # the secret is a Jinja template (as a vault or hashi_vault lookup would be), not in MDE_CLIENT_SECRET
        "client_secret": "{{ lookup('ansible.builtin.env', 'MY_MDE_SECRET') }}",
        "hostnames": ["computer_dns_name", "{{ 'machine-' ~ mde_id[:8] }}"],
        "compose": {
            "ansible_host": "mde_last_ip_address",
            "ansible_connection": "'psrp' if mde_os_platform.startswith('Windows') else 'ssh'",
        },
        "keyed_groups": [
            {"key": "mde_os_platform", "prefix": "os"},
            {"key": "mde_machine_tags", "prefix": "tag"},
            {"key": "mde_exposure_level", "prefix": "exposure"},
            {"key": "mde_rbac_group_name", "prefix": "rbac", "default_value": "ungrouped"},
        ],
        "groups": {"windows": "mde_os_platform.startswith('Windows')", "high_risk": "mde_risk_score == 'High'"},
    }
    secret = emulator.apps["full"]["client_secret"]
    result = inventory(ansible, config, env={"MDE_CLIENT_SECRET": None, "MY_MDE_SECRET": secret})
    assert result.rc == 0, result
    data = result.data
    hostvars = data["_meta"]["hostvars"]
    on = onboarded(emulator.machines)
    by_id = dict((v["mde_id"], h) for h, v in hostvars.items())
    m1 = emulator.machines[1]
    assert by_id[m1["id"]] == "machine-" + m1["id"][:8]  # template fall-through for the null name
    for m in on:
        if m["id"] == emulator.machines[2]["id"]:
            assert m["id"] not in by_id
            continue
        host = by_id[m["id"]]
        hv = hostvars[host]
        assert hv["ansible_host"] == m["lastIpAddress"]
        assert hv["ansible_connection"] == ("psrp" if m["osPlatform"].startswith("Windows") else "ssh")
        assert host in group_hosts(data, "os_" + m["osPlatform"])
        for tag in m["machineTags"]:
            assert host in group_hosts(data, "tag_" + tag)
        if m["exposureLevel"]:
            assert host in group_hosts(data, "exposure_" + m["exposureLevel"])
        rbac = {"The-A-Team": "rbac_The_A_Team", None: "rbac_ungrouped"}.get(
            m["rbacGroupName"], "rbac_" + str(m["rbacGroupName"]))
        assert host in group_hosts(data, rbac)
        assert (host in group_hosts(data, "windows")) == m["osPlatform"].startswith("Windows")
        assert (host in group_hosts(data, "high_risk")) == (m["riskScore"] == "High")
    assert group_hosts(data, "tag_VIP") == ["ws-00000.contoso.local"]
    assert set(group_hosts(data, "os_Linux")) | set(group_hosts(data, "os_macOS")) == set(
        by_id[m["id"]] for m in on if m["osPlatform"] in ("Linux", "macOS"))
    assert secret not in result.stdout and secret not in result.stderr


def test_cache_hit_makes_no_request(ansible, emulator):
    cache_dir = ansible.tmp_path / "inventory-cache"
    config = {"plugin": PLUGIN, "cache": True, "cache_plugin": "ansible.builtin.jsonfile",
              "cache_connection": str(cache_dir), "cache_timeout": 600,
              "keyed_groups": [{"key": "mde_os_platform", "prefix": "os"}]}
    env = {"MDE_TOKEN_CACHE": "false"}  # without the inventory cache, each run would need a new token
    first = inventory(ansible, config, env=env)
    assert first.rc == 0, first
    assert len(machine_lists(emulator)) == 1 and emulator.counters["token_requests"] == 1
    emulator.clear_log()

    second = inventory(ansible, config, env=env)
    assert second.rc == 0, second
    assert emulator.log == []  # no API call, no token request
    assert second.data == first.data

    # the cache holds the machines, never a credential
    files = os.listdir(str(cache_dir))
    assert len(files) == 1
    text = (cache_dir / files[0]).read_text()
    assert emulator.apps["full"]["client_secret"] not in text
    assert "access_token" not in text and "eyJ" not in text
    payload = json.loads(text)
    payload = json.loads(payload["__payload__"]) if "__payload__" in payload else payload
    assert sorted(m["id"] for m in payload["machines"]) == sorted(m["id"] for m in onboarded(emulator.machines))

    # --flush-cache reads the API again
    third = inventory(ansible, config, env=env, extra_args=("--list", "--flush-cache"))
    assert third.rc == 0, third
    assert len(machine_lists(emulator)) == 1


def _error_lines(result):
    prefix = "defender.endpoint.mde_machines: "
    return [m[m.index(prefix):] for m in result.messages if prefix in m]


def test_missing_permission_and_bad_credentials(ansible, emulator):
    env = {"ANSIBLE_INVENTORY_UNPARSED_FAILED": "true", "ANSIBLE_INVENTORY_ENABLED": "auto"}
    noperm = inventory(ansible, {"plugin": PLUGIN}, app="noperm", env=env)
    assert noperm.rc != 0
    assert "Traceback" not in noperm.stderr
    lines = set(_error_lines(noperm))
    assert len(lines) == 1, noperm
    line = lines.pop()
    assert "GET /api/machines failed: HTTP 403" in line
    assert "needs the WindowsDefenderATP application permission Machine.Read.All or Machine.ReadWrite.All" in line

    wrong = "not-the-secret-7f3a9"
    bad = inventory(ansible, {"plugin": PLUGIN}, env=dict(env, MDE_CLIENT_SECRET=wrong))
    assert bad.rc != 0
    assert "Traceback" not in bad.stderr
    lines = set(_error_lines(bad))
    assert len(lines) == 1, bad
    line = lines.pop()
    assert "Entra ID refused a token" in line and "AADSTS7000215" in line
    assert wrong not in bad.stderr and wrong not in bad.stdout
    # no machine listing was attempted without a token
    assert [e["path"] for e in machine_lists(emulator) if e["client_id"] == emulator.apps["full"]["client_id"]] == []
