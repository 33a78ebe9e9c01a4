"""Data from the API is untrusted: a device sets its own tags and name, and so what alerts say about it.

On the oldest and the newest ansible-core the collection claims, a hostile tag, computer name and alert title reach
the inventory, its cache, module results and a play's output as text, never run as a template.
"""
import json
import os

import pytest

from tests import cores


def hostile(tmp_path, what):
    marker = tmp_path / ("pwned-" + what)
    return "{{ lookup('ansible.builtin.pipe', 'touch %s') }}" % marker, marker


def make_hostile(emulator, tmp_path):
    tag, tag_marker = hostile(tmp_path, "tag")
    name, name_marker = hostile(tmp_path, "name")
    title, title_marker = hostile(tmp_path, "title")
    state = emulator.state
    by_tag, by_name = state.machines[0], state.machines[1]
    by_tag["machineTags"] = ["Finance", tag]
    by_name["computerDnsName"] = name
    state._index_machines()  # pylint: disable=protected-access
    for m in (by_tag, by_name):
        state.touch_machine(m)
    alert = state.alerts_for_machine(by_tag["id"])[0] if state.alerts_for_machine(by_tag["id"]) else state.alerts[0]
    alert["title"] = title
    state.touch_alert(alert)
    return dict(tag=tag, name=name, title=title, tag_machine=by_tag, name_machine=by_name, alert=alert,
                markers=[tag_marker, name_marker, title_marker])


def no_marker(data):
    for marker in data["markers"]:
        assert not os.path.exists(str(marker)), "API data was run as a template: %s exists" % marker


CORES = sorted({cores.OLDEST, cores.NEWEST})


def plain(value, marked):
    """Inventory JSON as text: before 2.19, ansible-inventory writes an unsafe string as {"__ansible_unsafe": text}
    (which AWX and ansible-core read back as unsafe); count those in ``marked``."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            marked.append(value["__ansible_unsafe"])
            return value["__ansible_unsafe"]
        return dict((k, plain(v, marked)) for k, v in value.items())
    if isinstance(value, list):
        return [plain(v, marked) for v in value]
    return value


@pytest.mark.parametrize("core", CORES)
def test_hostile_tag_and_name_in_inventory_cache_and_play(emulator, tmp_path, core):
    from tests.integration.harness import Ansible
    ansible = Ansible(emulator, tmp_path, core=core)
    data = make_hostile(emulator, tmp_path)
    config = {
        "plugin": "defender.endpoint.mde_machines",
        "hostnames": ["computer_dns_name", "id"],
        "compose": {"first_tag": "mde_machine_tags | last", "shown_name": "mde_computer_dns_name"},
        "keyed_groups": [{"key": "mde_machine_tags", "prefix": "tag"}],
        "cache": True, "cache_plugin": "ansible.builtin.jsonfile", "cache_connection": str(tmp_path / "inv-cache"),
    }
    first = ansible.inventory(config, extra_args=("--list", "--export"))
    assert first.rc == 0, first
    no_marker(data)
    marked = []
    hostvars = plain(first.data["_meta"]["hostvars"], marked)
    if core < "2.19":
        assert data["tag"] in marked and data["name"] in marked, "marked unsafe in the inventory's JSON"
    tagged = hostvars[data["tag_machine"]["computerDnsName"]]
    assert tagged["mde_machine_tags"] == ["Finance", data["tag"]]
    assert tagged["first_tag"] == data["tag"]
    # The hostile name is no host name: the next preference (the id) names the machine; its variable keeps the text.
    renamed = hostvars[data["name_machine"]["id"]]
    assert renamed["mde_computer_dns_name"] == data["name"] and renamed["shown_name"] == data["name"]
    assert "a later hostnames preference names them" in " ".join(first.stderr.split())
    assert not any("{" in host for host in hostvars)

    # From the inventory cache (no second listing), and used in a play that prints every hostile value.
    calls = len([e for e in emulator.log if e["path"] == "/api/machines"])
    inv_path = tmp_path / "mde.yml"
    play = ansible.playbook(
        hosts="%s,%s" % (data["tag_machine"]["computerDnsName"], data["name_machine"]["id"]),
        inventory=str(inv_path),
        tasks=[{"name": "show", "ansible.builtin.debug": {
            "msg": "{{ mde_machine_tags }} | {{ mde_computer_dns_name }} | {{ first_tag | default('') }}"}}])
    assert play.rc == 0, play
    assert len([e for e in emulator.log if e["path"] == "/api/machines"]) == calls, "read from the inventory cache"
    no_marker(data)
    assert data["tag"] in play.task("show", data["tag_machine"]["computerDnsName"])["msg"]
    assert data["name"] in play.task("show", data["name_machine"]["id"])["msg"]


@pytest.mark.parametrize("core", CORES)
def test_hostile_values_in_module_results_stay_text(emulator, tmp_path, core):
    from tests.integration.harness import Ansible
    ansible = Ansible(emulator, tmp_path, core=core)
    data = make_hostile(emulator, tmp_path)
    result = ansible.playbook(tasks=[
        {"name": "machine", "defender.endpoint.mde_machine_info": {"machine_id": data["tag_machine"]["id"]},
         "register": "m"},
        {"name": "alert", "defender.endpoint.mde_alert_info": {"alert_id": data["alert"]["id"]}, "register": "a"},
        {"name": "named", "defender.endpoint.mde_machine_info": {"machine_id": data["name_machine"]["id"]},
         "register": "n"},
        {"name": "show", "ansible.builtin.debug": {
            "msg": "{{ m.machines[0].machineTags | last }} | {{ a.alerts[0].title }} | "
                   "{{ n.machines[0].computerDnsName }}"}},
        {"name": "used as an argument", "ansible.builtin.set_fact": {
            "again": "{{ a.alerts[0].title }}"}},
        {"name": "and again", "ansible.builtin.debug": {"msg": "{{ again }}"}},
    ])
    assert result.rc == 0, result
    no_marker(data)
    assert result.task("show")["msg"] == "%s | %s | %s" % (data["tag"], data["title"], data["name"])
    assert result.task("and again")["msg"] == data["title"]
    json.dumps(result.data)
