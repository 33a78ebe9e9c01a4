"""Messages a new user meets (issue: the new user's path): a wrong tenant leads with which tenant and what to check;
a machine name that does not exist suggests the closest names the lookup read. Real ansible-playbook runs."""
INFO = "defender.endpoint.mde_machine_info"
ACTION = "defender.endpoint.mde_machine_action"
WRONG = "11111111-2222-3333-4444-555555555555"


def test_a_wrong_tenant_leads_with_the_tenant_and_what_to_check(ansible, emulator):
    result = ansible.playbook(tasks=[{"name": "info", INFO: {"machine_name": "ws-00000"}, "ignore_errors": True}],
                              env={"MDE_TENANT_ID": WRONG})
    msg = result.task("info")["msg"]
    first = msg.split(". ", 1)[0] + "."
    assert first == ("Tenant %s was not found at %s: check that tenant_id (MDE_TENANT_ID) is your tenant's Directory "
                     "(tenant) ID, or one of its domains, and that cloud (or authority_host) names the cloud the tenant "
                     "is in." % (WRONG, emulator.url)), msg
    # MSAL's own words follow, and nothing reached the API.
    assert "Entra ID could not sign in client %s in tenant %s" % (emulator.apps["full"]["client_id"], WRONG) in msg
    assert not [e for e in emulator.log if e["path"].startswith("/api/")]


def test_a_machine_name_that_does_not_exist_suggests_the_closest_names(ansible, emulator):
    result = ansible.playbook(tasks=[
        {"name": "isolate", ACTION: {"machine_name": "ws-0000.contoso.local", "action": "isolate", "comment": "typo"},
         "ignore_errors": True},
        {"name": "short name", ACTION: {"machine_name": "ws-0001", "action": "isolate", "comment": "typo"},
         "ignore_errors": True},
        {"name": "info", INFO: {"machine_name": "ws-0000.contoso.local"}},
        {"name": "nothing close", INFO: {"machine_name": "zz-99999.contoso.local"}},
    ])
    isolate = result.task("isolate")
    assert isolate["failed"] and isolate["msg"].startswith(
        "No onboarded machine named ws-0000.contoso.local in Defender for Endpoint. Closest names: ws-0000"), isolate
    assert len(isolate["closest_names"]) == 3 and all(n.startswith("ws-0000") for n in isolate["closest_names"])
    assert isolate["msg"].endswith("Closest names: %s." % ", ".join(isolate["closest_names"]))
    short = result.task("short name")
    assert short["failed"] and short["closest_names"] and all(n.startswith("ws-0001") for n in short["closest_names"])
    info = result.task("info")
    assert info["machines"] == [] and any("No machine is named ws-0000.contoso.local. Closest names: ws-0000" in w
                                          for w in info.get("warnings", [])), info
    assert result.task("nothing close")["machines"] == [] and not result.task("nothing close").get("warnings")
    # The suggestions come from the names the lookup read: one listing per name, no extra call, no write.
    lists = [e for e in emulator.log if e["method"] == "GET" and e["path"] == "/api/machines"]
    assert len(lists) == 4 and not emulator.writes()
