"""The shipped roles and playbooks over a multi-tenant inventory, through real ansible-playbook runs against
the multi-tenant emulator: contoso (the home tenant, the environment's), fabrikam and northwind (consented) and adatum
(never consented). Every test checks what each tenant's API received (``msp.log_of(name)``, its actions, its
indicators and its library), not only what the play printed."""
import pytest
import yaml

from tests import cores
from tests.integration.harness import Ansible

CONTAIN = "defender.endpoint.contain"
RELEASE = "defender.endpoint.release"


def onboarded(msp, name, count, windows=False):
    found = [m for m in msp.tenant(name).machines if m["onboardingStatus"] == "Onboarded" and m["computerDnsName"]
             and not m["computerDnsName"].startswith("dup-")
             and (not windows or (m["osPlatform"] or "").startswith("Windows"))]
    assert len(found) >= count
    return found[:count]


def host_inventory(msp, tmp_path, machines, own_app=None):
    """A static inventory as the mde_machines plugin with tenants makes it: each host (its computerDnsName) with its
    mde_id, mde_tenant_id and mde_tenant, and the tenant's own app where ``own_app`` names one ({tenant: app})."""
    own_app = own_app or {}
    hosts = {}
    for name, machine in machines:
        hostvars = {"mde_id": machine["id"], "mde_tenant_id": msp.tenant_id_of(name), "mde_tenant": name,
                    "ansible_connection": "local"}
        if name in own_app:
            app = msp.apps[own_app[name]]
            hostvars.update(mde_client_id=app["client_id"], mde_client_certificate_path=app["cert_path"])
        hosts[machine["computerDnsName"]] = hostvars
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump({"all": {"children": {"fleet": {"hosts": hosts}}}}))
    return str(path)


def role_play(role, **role_vars):
    return [{"name": role, "hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "run " + role, "ansible.builtin.include_role": {"name": role}, "vars": role_vars},
        {"name": "result", "ansible.builtin.debug": {"var": role.split(".")[-1] + "_result"}}]}]


def api_writes(msp, name):
    """(method, path) of every write one tenant's API received."""
    return sorted((e["method"], e["path"]) for e in msp.log_of(name)
                  if e["method"] in ("POST", "PATCH", "DELETE") and e["family"] != "token")


def tokens(msp, name):
    return {e["client_id"] for e in msp.log_of(name) if e["family"] == "token"}


def failed(result, host="localhost"):
    return [(t, r.get("msg")) for t, r in result.tasks(host).items() if r.get("failed")]


# -- contain / release ------------------------------------------------------------------------------------------
def test_contain_and_release_hosts_of_two_tenants_each_in_its_own_tenant(msp_ansible, msp, tmp_path):
    fabrikam = onboarded(msp, "fabrikam", 3)
    northwind = onboarded(msp, "northwind", 1)
    # northwind's host carries its tenant's own app (a certificate), as the inventory gives a tenant entry's client_id
    inventory = host_inventory(msp, tmp_path, [("fabrikam", m) for m in fabrikam[:2]] + [("northwind", northwind[0])],
                               own_app={"northwind": "cert"})
    hosts = [m["computerDnsName"] for m in fabrikam[:2] + northwind]
    # a bare machine id is not an inventory host: it goes to contain_tenant_id
    inputs = dict(contain_machines=hosts, contain_machine_ids=[fabrikam[2]["id"]],
                  contain_tenant_id=msp.tenant_id_of("fabrikam"), contain_tag="Contained")
    expected = {"fabrikam": sorted(m["id"] for m in fabrikam), "northwind": [northwind[0]["id"]]}

    run = msp_ansible.playbook(plays=role_play(CONTAIN, **inputs), inventory=inventory)
    assert run.rc == 0, failed(run)
    for name, ids in expected.items():
        isolations = [a for a in msp.tenant(name).actions if a["type"] == "Isolate"]
        assert sorted(a["machineId"] for a in isolations) == ids, name
        assert all(a["status"] == "Succeeded" for a in isolations)          # contain_wait, in the machine's tenant
        assert api_writes(msp, name) == sorted([("POST", "/api/machines/%s/isolate" % i) for i in ids]
                                               + [("POST", "/api/machines/AddOrRemoveTagForMultipleMachines")])
        # the tenant's machines resolved in one read, in that tenant (the tag's own read follows)
        reads = [e["query"]["$filter"] for e in msp.log_of(name) if e["method"] == "GET" and e["path"] == "/api/machines"]
        assert all(i in reads[0] for i in ids), (name, reads)
    # nothing in the environment's tenant, nothing in the tenant that was never named
    assert not msp.tenant("contoso").actions and api_writes(msp, "contoso") == [] and not msp.log_of("adatum")
    assert tokens(msp, "northwind") == {msp.apps["cert"]["client_id"]}
    assert tokens(msp, "fabrikam") == {msp.apps["full"]["client_id"]}
    result = run.task("result")["contain_result"]
    assert sorted(result["isolated"]) == sorted(expected["fabrikam"] + expected["northwind"])
    assert result["tenants"] == dict([(i, msp.tenant_id_of(n)) for n, ids in expected.items() for i in ids])

    # a second run writes nothing anywhere
    msp.clear_log()
    again = msp_ansible.playbook(plays=role_play(CONTAIN, **inputs), inventory=inventory)
    assert again.rc == 0, failed(again)
    assert [api_writes(msp, n) for n in ("contoso", "fabrikam", "northwind")] == [[], [], []]

    msp.clear_log()
    released = msp_ansible.playbook(plays=role_play(RELEASE, release_machines=hosts, release_tag="Contained",
                                                    release_machine_ids=[fabrikam[2]["id"]],
                                                    release_tenant_id=msp.tenant_id_of("fabrikam")),
                                    inventory=inventory)
    assert released.rc == 0, failed(released)
    for name, ids in expected.items():
        assert sorted(a["machineId"] for a in msp.tenant(name).actions if a["type"] == "Unisolate") == ids, name
        assert api_writes(msp, name) == sorted([("POST", "/api/machines/%s/unisolate" % i) for i in ids]
                                               + [("POST", "/api/machines/AddOrRemoveTagForMultipleMachines")])
    assert api_writes(msp, "contoso") == []
    assert sorted(released.task("result")["release_result"]["released"]) == sorted(expected["fabrikam"] + expected["northwind"])


# -- run_script -------------------------------------------------------------------------------------------------
def test_run_script_runs_each_host_in_its_tenant_and_uploads_once_per_tenant(msp_ansible, msp, tmp_path):
    machines = [("fabrikam", m) for m in onboarded(msp, "fabrikam", 2, windows=True)] + [
        ("northwind", m) for m in onboarded(msp, "northwind", 1, windows=True)]
    inventory = host_inventory(msp, tmp_path, machines, own_app={"northwind": "cert"})
    script = tmp_path / "remediate.ps1"
    script.write_bytes(b"#mde-emulator: stdout=fixed\n")
    play = [{"name": "remediate", "hosts": "fleet", "gather_facts": False, "tasks": [
        {"name": "run", "ansible.builtin.include_role": {"name": "defender.endpoint.run_script"},
         "vars": {"run_script_path": str(script)}}]}]
    run = msp_ansible.playbook(plays=play, inventory=inventory, forks=3)
    assert run.rc == 0, [failed(run, m["computerDnsName"]) for _n, m in machines]
    for name in ("fabrikam", "northwind"):
        sessions = [m["id"] for n, m in machines if n == name]
        # the library of each tenant got the script once; each host's session started in its own tenant
        assert [p for _m, p in api_writes(msp, name) if p == "/api/libraryfiles"] == ["/api/libraryfiles"], name
        assert sorted(p for _m, p in api_writes(msp, name) if p.endswith("/runliveresponse")) == sorted(
            "/api/machines/%s/runliveresponse" % i for i in sessions), name
        assert len([a for a in msp.tenant(name).actions if a["type"] == "LiveResponse"]) == len(sessions)
    assert api_writes(msp, "contoso") == [] and not msp.log_of("adatum")
    assert tokens(msp, "northwind") == {msp.apps["cert"]["client_id"]}
    report = [r for t, r in run.tasks(machines[0][1]["computerDnsName"]).items() if t.endswith("Report the exit codes")]
    assert all("%s: Succeeded, exit code 0" % m["computerDnsName"] in report[0]["msg"] for _n, m in machines), report

    # the script unchanged: no upload in any tenant
    msp.clear_log()
    again = msp_ansible.playbook(plays=play, inventory=inventory, forks=3)
    assert again.rc == 0
    assert not [p for n in ("contoso", "fabrikam", "northwind") for _m, p in api_writes(msp, n) if "/libraryfiles" in p]


# -- collect_evidence -------------------------------------------------------------------------------------------
def test_collect_evidence_from_hosts_of_two_tenants_each_in_its_tenant(msp_ansible, msp, tmp_path):
    machines = [("fabrikam", onboarded(msp, "fabrikam", 1, windows=True)[0]),
                ("northwind", onboarded(msp, "northwind", 1, windows=True)[0])]
    inventory = host_inventory(msp, tmp_path, machines)
    dest = tmp_path / "evidence"
    run = msp_ansible.playbook(tasks=[{"name": "collect", "ansible.builtin.include_role": {
        "name": "defender.endpoint.collect_evidence"}, "vars": {
        "collect_evidence_machines": [m["computerDnsName"] for _n, m in machines],
        "collect_evidence_paths": ["C:\\Temp\\a.txt"], "collect_evidence_investigation_package": False,
        "collect_evidence_dest": str(dest)}}], inventory=inventory)
    assert run.rc == 0, failed(run)
    for name, machine in machines:
        assert [p for _m, p in api_writes(msp, name)] == ["/api/machines/%s/runliveresponse" % machine["id"]]
    assert api_writes(msp, "contoso") == []
    items = yaml.safe_load((dest / "manifest.json").read_text())["items"]
    assert sorted((i["machine_id"], i["tenant_id"]) for i in items) == sorted(
        (m["id"], msp.tenant_id_of(n)) for n, m in machines)


# -- ioc_sync ---------------------------------------------------------------------------------------------------
SHARED = """\
indicator_value,indicator_type,action,title,description,severity,generate_alert
198.51.100.7,IpAddress,Block,C2 server,Seen in incident 4711,High,
login-contoso.example.net,DomainName,Audit,Look-alike domain,Phishing kit,,true
"""
NORTHWIND = [{"indicator_value": "northwind-phish.example.org", "indicator_type": "DomainName", "action": "Block",
              "title": "Northwind's own", "description": "Only this customer"}]


def own_indicators(msp, name):
    full = msp.apps["full"]["client_id"]
    return sorted(i["indicatorValue"] for i in msp.tenant(name).indicators.values() if i["createdBy"] == full)


def others(msp, name):
    full = msp.apps["full"]["client_id"]
    return sorted(i["id"] for i in msp.tenant(name).indicators.values() if i["createdBy"] != full)


def test_ioc_sync_per_tenant_shared_and_own_files_purge_per_tenant_a_tenant_without_consent_reported(
        msp_ansible, msp, tmp_path):
    shared = tmp_path / "iocs.csv"
    shared.write_text(SHARED)
    northwind_file = tmp_path / "northwind.yml"
    northwind_file.write_text(yaml.safe_dump({"indicators": NORTHWIND}))
    names = ("fabrikam", "northwind", "adatum", "contoso")
    before = dict((n, (own_indicators(msp, n), others(msp, n))) for n in names)
    assert before["fabrikam"][0] and before["northwind"][0]    # this app's indicators the files do not list: purged
    tenants = [{"tenant_id": msp.tenant_id_of("adatum"), "name": "adatum"},
               {"tenant_id": msp.tenant_id_of("fabrikam"), "name": "fabrikam"},
               {"tenant_id": msp.tenant_id_of("northwind"), "name": "northwind", "file": str(northwind_file)}]
    play = [{"import_playbook": "defender.endpoint.ioc_sync"}]
    args = ["-e", "ioc_sync_file=%s" % shared, "-e", yaml.safe_dump({"ioc_sync_tenants": tenants}, default_flow_style=True)]

    run = msp_ansible.playbook(plays=play, extra_args=args)
    assert run.rc == 2, run.stdout[-3000:]
    shared_values = ["198.51.100.7", "login-contoso.example.net"]
    assert own_indicators(msp, "fabrikam") == shared_values
    assert own_indicators(msp, "northwind") == sorted(shared_values + ["northwind-phish.example.org"])
    for name in ("fabrikam", "northwind"):
        assert others(msp, name) == before[name][1]                 # other creators' indicators never purged
        assert {p for _m, p in api_writes(msp, name)} <= {"/api/indicators/import", "/api/indicators/BatchDelete"}
    # adatum's token was refused: it got no API call; the environment's tenant was not touched
    assert not [e for e in msp.log_of("adatum") if e["path"].startswith("/api/")]
    assert api_writes(msp, "contoso") == [] and own_indicators(msp, "contoso") == before["contoso"][0]
    fail = [r for t, r in run.tasks().items() if t.endswith("Fail when a tenant could not be synced")][0]
    assert "could not be synced in 1 of 3 tenants" in fail["msg"] and "adatum" in fail["msg"], fail
    result = [r for t, r in run.tasks().items() if t.endswith("Record what was done in each tenant")][0]
    result = result["ansible_facts"]["ioc_sync_result"]
    assert result["failed_tenants"] == ["adatum"]
    by_name = dict((t["name"], t) for t in result["tenants"])
    assert by_name["adatum"]["status"] == "failed" and "AADSTS7000229" in by_name["adatum"]["msg"]
    assert by_name["fabrikam"]["counts"]["created"] == 2 and by_name["northwind"]["counts"]["created"] == 3
    assert by_name["fabrikam"]["counts"]["deleted"] == len(before["fabrikam"][0])

    # again, warning only: nothing written in any tenant, the run succeeds
    msp.clear_log()
    again = msp_ansible.playbook(plays=play, extra_args=args + ["-e", "ioc_sync_fail_on_tenant_error=false"])
    assert again.rc == 0, again.stdout[-3000:]
    assert msp.writes() == []
    assert "WARNING: the indicators could not be synced in 1 of" in again.stdout


# -- the localhost playbooks: one customer per run --------------------------------------------------------------
def test_remediate_alerts_in_the_tenant_of_its_extra_var(msp_ansible, msp):
    alerts = [a for a in msp.tenant("fabrikam").alerts if a["status"] == "New" and a["severity"] == "High"
              and a["machineId"]]
    assert alerts
    run = msp_ansible.playbook(plays=[{"import_playbook": "defender.endpoint.remediate_alerts"}],
                               extra_args=["-e", "remediate_alerts_tenant_id=%s" % msp.tenant_id_of("fabrikam")])
    assert run.rc == 0, failed(run)
    writes = api_writes(msp, "fabrikam")
    assert sorted({p for _m, p in writes if p.endswith("/isolate")}) == sorted(
        {"/api/machines/%s/isolate" % a["machineId"] for a in alerts})
    assert [p for _m, p in writes if p.startswith("/api/alerts")]
    assert all(a["status"] == "InProgress" for a in msp.tenant("fabrikam").alerts if a["id"] in {x["id"] for x in alerts})
    summary = run.task("Show the summary")["remediate_alerts_summary"]
    assert sorted(summary["alerts_updated"]) == sorted(a["id"] for a in alerts)
    # every call of the play went to fabrikam: the environment's tenant got none, not even a token
    assert not msp.log_of("contoso") and not msp.log_of("northwind")


# -- API data stays text ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("core", sorted({cores.OLDEST, cores.NEWEST}))
def test_a_hostile_machine_name_in_a_tenants_answer_stays_text_through_contain(msp, tmp_path, core):
    ansible = Ansible(msp, tmp_path, core=core)
    marker = tmp_path / "pwned"
    hostile = "{{ lookup('ansible.builtin.pipe', 'touch %s') }}" % marker
    machines = [("fabrikam", onboarded(msp, "fabrikam", 1)[0]), ("northwind", onboarded(msp, "northwind", 1)[0])]
    machines[0][1]["computerDnsName"] = hostile
    msp.tenant("fabrikam")._index_machines()  # pylint: disable=protected-access
    msp.tenant("fabrikam").touch_machine(machines[0][1])
    hosts = dict(("h-%s" % name, {"mde_id": m["id"], "mde_tenant_id": msp.tenant_id_of(name), "mde_tenant": name})
                 for name, m in machines)
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    run = ansible.playbook(plays=role_play(CONTAIN, contain_machines=sorted(hosts), contain_wait=False) + [
        {"name": "again", "hosts": "localhost", "gather_facts": False, "tasks": [
            {"name": "names", "ansible.builtin.debug": {"msg": "{{ contain_result.machines.values() | sort }}"}}]}],
        inventory=str(inventory))
    assert run.rc == 0, failed(run)
    assert not marker.exists(), "API data was run as a template"
    assert hostile in run.task("names")["msg"]
    for name, machine in machines:
        assert [p for _m, p in api_writes(msp, name)] == ["/api/machines/%s/isolate" % machine["id"]]


def test_triage_incident_in_the_tenant_of_its_extra_var_on_both_apis(msp_ansible, msp):
    alerts = msp.tenant("northwind").alerts
    incident = next(a["incidentId"] for a in alerts if a["incidentId"] and a["machineId"])
    devices = sorted({a["machineId"] for a in alerts if a["incidentId"] == incident and a["machineId"]})
    assert devices
    run = msp_ansible.playbook(plays=[{"import_playbook": "defender.endpoint.triage_incident"}],
                               extra_args=["-e", "triage_incident_id=%s" % incident,
                                           "-e", "triage_incident_tenant_id=%s" % msp.tenant_id_of("northwind")])
    assert run.rc == 0, failed(run)
    writes = api_writes(msp, "northwind")
    assert sorted(p.split("/")[3] for _m, p in writes if p.endswith("/isolate")) == devices
    assert [w for w in writes if w[1].startswith("/v1.0/")] == [
        ("PATCH", "/v1.0/security/incidents/%s" % incident), ("POST", "/v1.0/security/incidents/%s/comments" % incident)]
    assert not msp.log_of("contoso") and not msp.log_of("fabrikam")
