"""The mde_machines inventory over several tenants (a security provider's customers, one multi-tenant app), through
real `ansible-inventory` and `ansible-playbook` runs against the multi-tenant emulator: contoso (the home tenant, 50
machines), fabrikam and northwind (20 each, consented) and adatum (5, whose admin never consented)."""
import os

import yaml

from .test_mde_machines_inventory import PLUGIN, expected_names, group_hosts, inventory, onboarded

THREE = ("contoso", "fabrikam", "northwind")


def tenants(msp, names=THREE, **per_tenant):
    return [dict({"tenant_id": msp.tenant_id_of(name), "name": name}, **per_tenant.get(name, {})) for name in names]


def machine_reads(msp, name):
    return [e for e in msp.log_of(name) if e["method"] == "GET" and e["path"] == "/api/machines"]


def expected(msp, name):
    """{host name: machine id} for one tenant on its own (today's naming rule within a tenant)."""
    return expected_names(onboarded(msp.tenant(name).machines))


def expected_order(msp, name):
    """A tenant's host names in the order the API lists its machines (a name where it first appears)."""
    return list(dict.fromkeys(m["computerDnsName"] or m["id"] for m in onboarded(msp.tenant(name).machines)))


def warnings_of(result):
    """The run's standard error without white space: before ansible-core 2.19 a warning wraps at 80 columns, also at
    the hyphens of a host name or a tenant id."""
    return squeezed(result.stderr)


def squeezed(text):
    return "".join(text.split())


def test_hosts_groups_and_variables_of_exactly_the_listed_tenants(msp_ansible, msp):
    config = {"plugin": PLUGIN, "tenants": tenants(msp),
              "keyed_groups": [{"key": "mde_os_platform", "prefix": "os"}]}
    result = inventory(msp_ansible, config)
    assert result.rc == 0, result
    hostvars = result.data["_meta"]["hostvars"]
    everything = {}
    for name in THREE:
        mine = expected(msp, name)
        everything.update(mine)
        # The group per tenant holds that tenant's machines, each with its tenant's id and label.
        assert group_hosts(result.data, "tenant_%s" % name) == sorted(mine)
        for host, machine_id in mine.items():
            assert hostvars[host]["mde_id"] == machine_id
            assert hostvars[host]["mde_tenant_id"] == msp.tenant_id_of(name)
            assert hostvars[host]["mde_tenant"] == name
        # One listing per tenant, in that tenant.
        assert len(machine_reads(msp, name)) == 1
    assert sorted(hostvars) == sorted(everything)
    # Keyed groups span the tenants: a platform's group holds every tenant's machines of it.
    servers = sorted(h for h, v in hostvars.items() if v["mde_os_platform"] == "WindowsServer2022")
    assert {v["mde_tenant"] for h, v in hostvars.items() if h in servers} == set(THREE)
    assert group_hosts(result.data, "os_WindowsServer2022") == servers
    # adatum is not listed: never asked, not even for a token.
    assert not msp.log_of("adatum")


def test_only_the_listed_tenants_not_the_environments_one(msp_ansible, msp):
    # The environment's MDE_TENANT_ID is contoso's (as AWX sets a credential's tenant): it is no extra tenant.
    result = inventory(msp_ansible, {"plugin": PLUGIN, "tenants": tenants(msp, ("fabrikam", "northwind"))})
    assert result.rc == 0, result
    assert {v["mde_tenant"] for v in result.data["_meta"]["hostvars"].values()} == {"fabrikam", "northwind"}
    assert not machine_reads(msp, "contoso")


def test_same_name_in_two_tenants_is_two_hosts_the_first_seen_keeps_it_and_a_later_one_renames_nothing(msp_ansible, msp):
    contoso = next(m for m in onboarded(msp.tenant("contoso").machines) if m["computerDnsName"]
                   and m["computerDnsName"] in expected(msp, "contoso"))
    name = contoso["computerDnsName"]
    fabrikam = onboarded(msp.tenant("fabrikam").machines)[0]
    fabrikam_name = fabrikam["computerDnsName"]
    # A machine of fabrikam's with contoso's name, that Defender saw a year earlier: it keeps the name although
    # contoso is listed first.
    fabrikam.update(computerDnsName=name, firstSeen="2020-01-01T00:00:00Z")
    contoso["firstSeen"] = "2021-01-01T00:00:00Z"
    msp.tenant("fabrikam").touch_machine(fabrikam)
    msp.tenant("contoso").touch_machine(contoso)
    result = inventory(msp_ansible, {"plugin": PLUGIN, "tenants": tenants(msp)})
    assert result.rc == 0, result
    hostvars = result.data["_meta"]["hostvars"]
    assert hostvars[name]["mde_id"] == fabrikam["id"] and hostvars[name]["mde_tenant"] == "fabrikam"
    renamed = "%s_contoso" % name
    assert hostvars[renamed]["mde_id"] == contoso["id"] and hostvars[renamed]["mde_tenant"] == "contoso"
    assert fabrikam_name not in hostvars
    assert renamed in group_hosts(result.data, "tenant_contoso") and name in group_hosts(result.data, "tenant_fabrikam")
    text = warnings_of(result)
    clash = [w for w in text.split("[WARNING]") if name in w]
    assert len(clash) == 1 and "contoso" in clash[0] and "fabrikam" in clash[0], text

    # northwind adds a machine of the same name later: it gets the suffix; no host of before changes its name.
    northwind = onboarded(msp.tenant("northwind").machines)[0]
    northwind.update(computerDnsName=name, firstSeen="2026-11-30T00:00:00Z")
    msp.tenant("northwind").touch_machine(northwind)  # (the emulator keeps each machine's JSON until touched)
    again = inventory(msp_ansible, {"plugin": PLUGIN, "tenants": tenants(msp)})
    assert again.rc == 0, again
    after = again.data["_meta"]["hostvars"]
    assert after[name]["mde_id"] == fabrikam["id"] and after[renamed]["mde_id"] == contoso["id"]
    assert after["%s_northwind" % name]["mde_id"] == northwind["id"]
    # (northwind's own machine was renamed by its customer: that host's name changes, and no other)
    before = dict((h, v["mde_id"]) for h, v in hostvars.items() if v["mde_id"] != northwind["id"])
    assert all(after[h]["mde_id"] == machine_id for h, machine_id in before.items())


def test_a_play_in_inventory_order_takes_the_tenants_in_turn(msp_ansible, msp, tmp_path):
    # A play goes through its hosts in inventory order, forks at a time: tenant after tenant, every fork would wait on
    # the first tenant's limits. The hosts come one of each tenant in turn, each tenant's in its own order.
    path = tmp_path / "customers.mde.yml"
    path.write_text(yaml.safe_dump({"plugin": PLUGIN, "tenants": tenants(msp),
                                    "compose": {"ansible_connection": "'local'"}}))
    play = [{"name": "every machine", "hosts": "all", "gather_facts": False,
             "tasks": [{"name": "in turn", "ansible.builtin.set_fact": {"at": "{{ now().timestamp() }}"}}]}]
    result = msp_ansible.playbook(plays=play, inventory=str(path), forks=1)  # one at a time: in play order
    assert result.rc == 0, result
    ran = result.data["plays"][0]["tasks"][0]["hosts"]
    order = sorted(ran, key=lambda host: float(ran[host]["ansible_facts"]["at"]))
    own = dict((name, expected(msp, name)) for name in THREE)
    owner = dict((host, name) for name in THREE for host in own[name])
    assert sorted(order) == sorted(owner)
    assert [owner[host] for host in order[:6]] == list(THREE) * 2, order[:6]
    for name in THREE:
        mine = [host for host in order if owner[host] == name]
        assert mine == [host for host in expected_order(msp, name) if host in own[name]]


def test_a_tenant_without_consent_is_left_out_with_its_consent_page_or_fails_the_inventory_when_asked(msp_ansible, msp):
    listed = tenants(msp, ("fabrikam", "adatum", "northwind"))
    result = inventory(msp_ansible, {"plugin": PLUGIN, "tenants": listed})
    assert result.rc == 0, result
    assert {v["mde_tenant"] for v in result.data["_meta"]["hostvars"].values()} == {"fabrikam", "northwind"}
    assert "tenant_adatum" not in result.data
    text = warnings_of(result)
    adatum = msp.tenant_id_of("adatum")
    assert squeezed("tenant adatum (%s) is left out" % adatum) in text, text
    assert "/%s/adminconsent?client_id=%s" % (adatum, msp.apps["full"]["client_id"]) in text, text
    assert text.count("tenantadatum") == 1, text
    # adatum's token was refused; nothing was asked of its API.
    assert [e["status"] for e in msp.log_of("adatum")] == [401]

    # fail_on_tenant_error: the source fails (no host of any tenant), which fails the run where unparsed sources do.
    config = {"plugin": PLUGIN, "tenants": listed, "fail_on_tenant_error": True}
    strict = inventory(msp_ansible, config)
    assert strict.data["_meta"]["hostvars"] == {}
    assert squeezed("tenant adatum (%s) is left out" % adatum) in warnings_of(strict)
    assert "adminconsent" in warnings_of(strict)
    strict = inventory(msp_ansible, config, env={"ANSIBLE_INVENTORY_UNPARSED_FAILED": "true"})
    assert strict.rc != 0 and "adminconsent" in warnings_of(strict)


def test_a_tenant_with_its_own_credential_and_the_cache_per_tenant(msp_ansible, msp, tmp_path):
    cert = msp.apps["cert"]
    own = {"northwind": {"client_id": cert["client_id"], "client_certificate_path": cert["cert_path"]}}
    cache = {"cache": True, "cache_plugin": "ansible.builtin.jsonfile", "cache_connection": str(tmp_path / "cache"),
             "cache_timeout": 3600}
    config = dict({"plugin": PLUGIN, "tenants": tenants(msp, **own)}, **cache)
    result = inventory(msp_ansible, config)
    assert result.rc == 0, result
    hostvars = result.data["_meta"]["hostvars"]
    northwind = [v for v in hostvars.values() if v["mde_tenant"] == "northwind"]
    assert northwind and all(v["mde_client_id"] == cert["client_id"] for v in northwind), result.stderr[-3000:]
    assert all(v["mde_client_certificate_path"] == cert["cert_path"] for v in northwind)
    assert not [v for v in hostvars.values() if v["mde_tenant"] != "northwind" and "mde_client_id" in v]
    # northwind's token was the certificate app's, the others' the shared app's.
    tokens = dict((name, [e["client_id"] for e in msp.log_of(name) if e["family"] == "token"]) for name in THREE)
    assert tokens["northwind"] == [cert["client_id"]], tokens
    assert tokens["fabrikam"] == [msp.apps["full"]["client_id"]], tokens
    files = os.listdir(str(tmp_path / "cache"))
    assert len([f for f in files if "_tenant_" in f]) == 3, files

    # From the cache: no request at all; a tenant dropped from the list keeps the others' cached copies.
    msp.clear_log()
    config["tenants"] = tenants(msp, ("contoso", "northwind"), **own)
    cached = inventory(msp_ansible, config)
    assert cached.rc == 0, cached
    assert not msp.log
    assert {v["mde_tenant"] for v in cached.data["_meta"]["hostvars"].values()} == {"contoso", "northwind"}


def test_a_per_host_containment_over_the_inventory_reaches_each_hosts_own_tenant(msp_ansible, msp, tmp_path):
    path = tmp_path / "customers.mde.yml"
    # northwind has its own app (a certificate); the others share the provider's app, whose secret is in the
    # environment (MDE_CLIENT_SECRET, as an AWX credential sets it).
    cert = msp.apps["cert"]
    own = {"northwind": {"client_id": cert["client_id"], "client_certificate_path": cert["cert_path"]}}
    path.write_text(yaml.safe_dump({"plugin": PLUGIN, "tenants": tenants(msp, **own),
                                    "compose": {"ansible_connection": "'local'"}}))
    targets = {}
    for name in THREE:
        machine = next(m for m in onboarded(msp.tenant(name).machines) if m["osPlatform"].startswith("Windows")
                       and m["computerDnsName"] in expected(msp, name))
        targets[machine["computerDnsName"]] = (name, machine["id"])
    play = [{"name": "contain", "hosts": ":".join(sorted(targets)), "gather_facts": False,
             "module_defaults": {"group/defender.endpoint.mde": {
                 "tenant_id": "{{ mde_tenant_id }}", "client_id": "{{ mde_client_id | default(omit) }}",
                 "client_certificate_path": "{{ mde_client_certificate_path | default(omit) }}"}},
             "tasks": [{"name": "isolate", "defender.endpoint.mde_machine_action": {
                 "machine_id": "{{ mde_id }}", "action": "isolate", "comment": "INC-1: contained per tenant"}}]}]
    result = msp_ansible.playbook(plays=play, inventory=str(path), forks=3)
    assert result.rc == 0, result
    for host, (name, machine_id) in targets.items():
        assert result.task("isolate", host)["changed"] is True
        assert [a["machineId"] for a in msp.tenant(name).actions] == [machine_id]
        assert [e["path"] for e in msp.log_of(name) if e["method"] == "POST" and e["family"] != "token"] == [
            "/api/machines/%s/isolate" % machine_id]
    # Each tenant's token was its app's: northwind's the certificate app's (the environment's secret not sent).
    tokens = dict((name, set(e["client_id"] for e in msp.log_of(name) if e["family"] == "token")) for name in THREE)
    assert tokens == {"contoso": {msp.apps["full"]["client_id"]}, "fabrikam": {msp.apps["full"]["client_id"]},
                      "northwind": {cert["client_id"]}}, tokens


def test_a_host_whose_tenant_has_its_own_app_never_gets_the_providers_secret(msp_ansible, msp, tmp_path):
    # northwind has its own app (a certificate, in the inventory) but the play passes on only its client_id: the task
    # fails saying no credential was given, and the environment's secret (the provider's app's) is never sent with
    # northwind's app id.
    path = tmp_path / "customers.mde.yml"
    cert = msp.apps["cert"]
    own = {"northwind": {"client_id": cert["client_id"], "client_certificate_path": cert["cert_path"]}}
    path.write_text(yaml.safe_dump({"plugin": PLUGIN, "tenants": tenants(msp, ("fabrikam", "northwind"), **own),
                                    "compose": {"ansible_connection": "'local'"}}))
    hosts = dict((name, next(h for h in expected(msp, name))) for name in ("fabrikam", "northwind"))
    play = [{"name": "read", "hosts": ":".join(sorted(hosts.values())), "gather_facts": False,
             "module_defaults": {"group/defender.endpoint.mde": {
                 "tenant_id": "{{ mde_tenant_id }}", "client_id": "{{ mde_client_id | default(omit) }}"}},
             "tasks": [{"name": "read", "defender.endpoint.mde_machine_info": {"machine_id": "{{ mde_id }}"}}]}]
    msp.clear_log()
    result = msp_ansible.playbook(plays=play, inventory=str(path))
    assert result.rc != 0
    assert result.task("read", hosts["fabrikam"]).get("failed") is not True
    failed = result.task("read", hosts["northwind"])
    assert failed["failed"] is True and "No credential given" in failed["msg"], failed
    # northwind's only sign-in is the inventory's, with its own app; fabrikam's task signed in with the provider's.
    tokens = dict((name, set(e["client_id"] for e in msp.log_of(name) if e["family"] == "token"))
                  for name in ("fabrikam", "northwind"))
    assert tokens == {"fabrikam": {msp.apps["full"]["client_id"]}, "northwind": {cert["client_id"]}}, tokens


def test_a_shared_access_token_cannot_read_a_tenant_list(msp_ansible, msp):
    # A ready token is for one tenant: shared, it would list one customer's machines under every label. The source
    # fails before any request, saying why.
    msp.clear_log()
    env = {"MDE_ACCESS_TOKEN": "eyJ0eXAiOiJKV1QifQ.e30.c2ln", "MDE_CLIENT_SECRET": "",
           "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true"}
    result = inventory(msp_ansible, {"plugin": PLUGIN, "tenants": tenants(msp)}, env=env)
    assert result.rc != 0
    assert squeezed("an access token is issued for one tenant") in warnings_of(result)
    assert not msp.log
