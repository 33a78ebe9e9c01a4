"""mde_machine (tags and device value) through real ansible-playbook runs against the emulator.

Expected results come from the emulator's own machines (``emulator.machines``); every test checks what the emulator
received: the exact write bodies, no write in check mode, no write on a re-run, no call at all for bad input.
"""
import pytest

from tests.emulator import Emulator
from tests.integration.harness import Ansible, onboarded

MACHINE = "defender.endpoint.mde_machine"
BULK = "/api/machines/AddOrRemoveTagForMultipleMachines"


def writes(emulator):
    """(path, body) of every write the emulator received, in order."""
    return [(e["path"], e["body"]) for e in emulator.writes()]


def api_gets(emulator):
    return [e for e in emulator.log if e["method"] == "GET" and e["path"].startswith("/api/")]


def by_id(emulator, machine_id):
    return next(m for m in emulator.machines if m["id"] == machine_id)


def task(name, **args):
    return {"name": name, MACHINE: args}


def failing(name, **args):
    return {"name": name, MACHINE: args, "ignore_errors": True}


# -- one machine ---------------------------------------------------------------------------------------
def test_one_machine_tags_and_device_value_idempotent_with_check_mode_and_diff(ansible, emulator):
    machine = next(m for m in onboarded(emulator, 20) if m["machineTags"] and m["deviceValue"] != "Low")
    mid, name = machine["id"], machine["computerDnsName"]
    tags0, value0 = list(machine["machineTags"]), machine["deviceValue"]
    existing = tags0[0]

    result = ansible.playbook(diff=True, tasks=[
        dict(task("check add", machine_id=mid, tags=["Patch-Wave-1", existing], device_value="Low"), check_mode=True),
        task("add", machine_id=mid, tags=["Patch-Wave-1", existing], device_value="Low"),
        task("add again", machine_name=name.upper(), tags=["Patch-Wave-1", existing], device_value="Low"),
        task("remove", machine_name=name, tags=["Patch-Wave-1", "never-there"], state="absent"),
        task("remove again", machine_id=mid, tags=["Patch-Wave-1", "never-there"], state="absent"),
        task("purge", machine_id=mid, tags=["Only"], purge_tags=True),
        task("purge again", machine_id=mid, tags=["Only"], purge_tags=True),
        task("purge all", machine_id=mid, tags=[], purge_tags=True),
    ])
    assert result.rc == 0, result

    check = result.task("check add")
    assert check["changed"] is True and check["updated_ids"] == [mid]
    assert check["diff"] == {"before": {mid: {"machineTags": tags0, "deviceValue": value0}},
                             "after": {mid: {"machineTags": tags0 + ["Patch-Wave-1"], "deviceValue": "Low"}}}
    assert check["machine"]["machineTags"] == tags0 + ["Patch-Wave-1"] and check["machine"]["deviceValue"] == "Low"

    add = result.task("add")
    assert add["changed"] is True and add["diff"] == check["diff"]
    assert add["machine"]["id"] == mid and add["machine"]["machineTags"] == tags0 + ["Patch-Wave-1"]
    assert add["machine"]["deviceValue"] == "Low"
    assert "@odata.context" not in add["machine"]

    again = result.task("add again")
    assert again["changed"] is False and again["updated_ids"] == [] and again["diff"] == {"before": {}, "after": {}}
    assert again["machine"]["machineTags"] == tags0 + ["Patch-Wave-1"]

    remove = result.task("remove")
    assert remove["changed"] is True
    assert remove["diff"]["before"][mid] == {"machineTags": tags0 + ["Patch-Wave-1"]}
    assert remove["diff"]["after"][mid] == {"machineTags": tags0}
    assert result.task("remove again")["changed"] is False

    purge = result.task("purge")
    assert purge["changed"] is True and purge["machine"]["machineTags"] == ["Only"]
    assert result.task("purge again")["changed"] is False
    purge_all = result.task("purge all")
    assert purge_all["changed"] is True and purge_all["machine"]["machineTags"] == []

    tag_path = "/api/machines/%s/tags" % mid
    assert writes(emulator) == [
        (tag_path, {"Value": "Patch-Wave-1", "Action": "Add"}),          # add: only the missing tag ...
        ("/api/machines/%s/setDeviceValue" % mid, {"DeviceValue": "Low"}),  # ... and the device value
        (tag_path, {"Value": "Patch-Wave-1", "Action": "Remove"}),       # remove: only the tag it has
    ] + [(tag_path, {"Value": t, "Action": "Remove"}) for t in tags0] + [  # purge: the others go, Only comes
        (tag_path, {"Value": "Only", "Action": "Add"}),
        (tag_path, {"Value": "Only", "Action": "Remove"}),                # purge all
    ]
    assert by_id(emulator, mid)["machineTags"] == [] and by_id(emulator, mid)["deviceValue"] == "Low"


def test_one_machine_device_value_only_leaves_tags_alone(ansible, emulator):
    machine = next(m for m in onboarded(emulator, 20) if m["deviceValue"] == "Normal" and m["machineTags"])
    mid = machine["id"]
    result = ansible.playbook(diff=True, tasks=[
        task("high", machine_id=mid, device_value="High"),
        task("high again", machine_id=mid, device_value="High"),
    ])
    assert result.rc == 0, result
    high = result.task("high")
    assert high["changed"] is True
    assert high["diff"] == {"before": {mid: {"deviceValue": "Normal"}}, "after": {mid: {"deviceValue": "High"}}}
    assert high["machine"]["deviceValue"] == "High" and high["machine"]["machineTags"] == machine["machineTags"]
    assert result.task("high again")["changed"] is False
    assert writes(emulator) == [("/api/machines/%s/setDeviceValue" % mid, {"DeviceValue": "High"})]


# -- a list of machines: bulk endpoint ---------------------------------------------------------------------
def test_list_of_machines_uses_the_bulk_endpoint_only_where_needed(ansible, emulator):
    machines = onboarded(emulator, 12)
    ids = [m["id"] for m in machines]
    before = dict((m["id"], (list(m["machineTags"]), m["deviceValue"])) for m in machines)
    lacking_finance = [i for i in ids if "Finance" not in before[i][0]]
    having_finance = [i for i in ids if "Finance" in before[i][0]]
    not_high = [i for i in ids if before[i][1] != "High"]
    assert lacking_finance and having_finance and not_high and len(not_high) < len(ids)

    args = dict(machine_ids=[i.upper() for i in ids] + [ids[0]], tags=["Finance", "Wave-2"], device_value="High")
    result = ansible.playbook(diff=True, tasks=[
        dict(task("check", **args), check_mode=True),
        task("apply", **args),
        task("apply again", **args),
        task("drop finance", machine_ids=ids, tags=["Finance"], state="absent"),
        task("drop finance again", machine_ids=ids, tags=["Finance"], state="absent"),
    ])
    assert result.rc == 0, result

    check = result.task("check")
    assert check["changed"] is True and check["updated_ids"] == ids
    assert [m["id"] for m in check["machines"]] == ids
    for m in check["machines"]:
        tags0, _value0 = before[m["id"]]
        assert m["machineTags"] == tags0 + [t for t in ("Finance", "Wave-2") if t not in tags0]
        assert m["deviceValue"] == "High"
    assert set(check["diff"]["before"]) == set(ids)
    assert check["diff"]["before"][ids[0]] == {"machineTags": before[ids[0]][0], "deviceValue": before[ids[0]][1]}

    apply = result.task("apply")
    assert apply["changed"] is True and apply["diff"] == check["diff"]
    assert [m["id"] for m in apply["machines"]] == ids
    for m in apply["machines"]:                          # as the emulator holds them now
        assert set(m["machineTags"]) == set(before[m["id"]][0]) | {"Finance", "Wave-2"}
        assert m["deviceValue"] == "High"
    again = result.task("apply again")
    assert again["changed"] is False and again["updated_ids"] == []

    drop = result.task("drop finance")
    assert drop["changed"] is True and drop["updated_ids"] == ids
    assert all("Finance" not in m["machineTags"] and "Wave-2" in m["machineTags"] for m in drop["machines"])
    assert result.task("drop finance again")["changed"] is False

    assert writes(emulator) == [
        (BULK, {"Value": "Finance", "Action": "Add", "MachineIds": lacking_finance}),
        (BULK, {"Value": "Wave-2", "Action": "Add", "MachineIds": ids}),
    ] + [("/api/machines/%s/setDeviceValue" % i, {"DeviceValue": "High"}) for i in not_high] + [
        (BULK, {"Value": "Finance", "Action": "Remove", "MachineIds": ids}),
    ]
    # Each run reads the 12 machines with one filtered listing call (id eq .. or ..), never one call per machine.
    reads = api_gets(emulator)
    assert len(reads) == 5
    assert all(e["path"] == "/api/machines" and e["query"]["$filter"].count(" or ") == 11 for e in reads)


def test_list_with_an_unknown_id_changes_nothing(ansible, emulator):
    ids = [m["id"] for m in onboarded(emulator, 3)]
    unknown = "0" * 40
    result = ansible.playbook(tasks=[failing("unknown", machine_ids=ids + [unknown], tags=["X"])])
    res = result.task("unknown")
    assert res["failed"] is True
    assert res["missing_ids"] == [unknown] and unknown in res["msg"] and "nothing was changed" in res["msg"]
    assert writes(emulator) == []


def test_a_list_that_fails_part_way_names_what_was_changed_and_the_rerun_finishes(ansible, emulator):
    machines = onboarded(emulator, 6)
    ids = [m["id"] for m in machines]
    before = dict((m["id"], list(m["machineTags"])) for m in machines)
    lacking = [i for i in ids if "Finance" not in before[i]]
    assert lacking and len(lacking) < len(ids)
    # the second bulk call (Wave-3 for all six) is refused; the first (Finance for those lacking it) went through
    emulator.inject_fault("AddOrRemoveTagForMultipleMachines", "status", status=400, skip=1)
    args = dict(machine_ids=ids, tags=["Finance", "Wave-3"])
    result = ansible.playbook(tasks=[failing("apply", **args), task("again", **args)])
    res = result.task("apply")
    assert res["failed"] is True and res["changed"] is True
    assert res["updated_ids"] == lacking
    assert res["status"] == 400 and res["path"] == BULK
    assert ("%d of the 6 machines to change had been changed before this call" % len(lacking)) in res["msg"]
    assert "re-running the task is safe" in res["msg"] and "Traceback" not in res["msg"]
    again = result.task("again")
    assert again["changed"] is True and again["updated_ids"] == ids   # only Wave-3 was left to add
    assert writes(emulator) == [
        (BULK, {"Value": "Finance", "Action": "Add", "MachineIds": lacking}),
        (BULK, {"Value": "Wave-3", "Action": "Add", "MachineIds": ids}),   # refused
        (BULK, {"Value": "Wave-3", "Action": "Add", "MachineIds": ids}),   # the re-run: Finance is not sent again
    ]
    assert [e["status"] for e in emulator.writes()] == [200, 400, 200]
    for i in ids:
        assert {"Finance", "Wave-3"} <= set(by_id(emulator, i)["machineTags"])


def test_one_machine_that_fails_part_way_reports_what_was_changed_and_the_rerun_finishes(ansible, emulator):
    machine = next(m for m in onboarded(emulator, 20) if "First" not in m["machineTags"])
    mid, tags0 = machine["id"], list(machine["machineTags"])
    tag_path = "/api/machines/%s/tags" % mid
    # the second /tags call (Second) is refused; the first (First) went through
    emulator.inject_fault("/machines/%s/tags" % mid, "status", status=400, skip=1)
    args = dict(machine_id=mid, tags=["First", "Second"])
    result = ansible.playbook(tasks=[failing("apply", **args), task("again", **args)])
    res = result.task("apply")
    assert res["failed"] is True and res["changed"] is True and res["updated_ids"] == [mid]
    assert res["status"] == 400 and res["path"] == tag_path
    assert "1 of the 1 machines to change had been changed before this call" in res["msg"]
    assert "re-running the task is safe" in res["msg"]
    again = result.task("again")
    assert again["changed"] is True and again["machine"]["machineTags"] == tags0 + ["First", "Second"]
    assert writes(emulator) == [
        (tag_path, {"Value": "First", "Action": "Add"}),
        (tag_path, {"Value": "Second", "Action": "Add"}),     # refused
        (tag_path, {"Value": "Second", "Action": "Add"}),     # the re-run: First is not sent again
    ]
    assert [e["status"] for e in emulator.writes()] == [200, 400, 200]


def test_10000_unknown_machine_ids_make_a_short_message(ansible, emulator):
    known = [m["id"] for m in onboarded(emulator, 2)]
    unknown = ["%040x" % (i + 1) for i in range(10000)]
    result = ansible.playbook(tasks=[failing("unknown", machine_ids=known + unknown, tags=["X"])])
    res = result.task("unknown")
    assert res["failed"] is True and res["missing_ids"] == unknown
    assert res["msg"] == ("10000 of the 10002 machine ids are not in Defender for Endpoint; nothing was changed: "
                          "%s and 9995 more (missing_ids lists them all)." % ", ".join(unknown[:5]))
    assert writes(emulator) == []


def test_purge_on_a_list_removes_other_tags_per_machine(ansible, emulator):
    machines = onboarded(emulator, 8)
    ids = [m["id"] for m in machines]
    before = dict((m["id"], list(m["machineTags"])) for m in machines)
    others = []
    for i in ids:
        others += [t for t in before[i] if t != "Engineering" and t not in others]
    assert others and any("Engineering" in before[i] for i in ids)
    result = ansible.playbook(tasks=[task("purge", machine_ids=ids, tags=["Engineering"], purge_tags=True)])
    assert result.rc == 0, result
    for m in result.task("purge")["machines"]:
        assert m["machineTags"] == ["Engineering"] and by_id(emulator, m["id"])["machineTags"] == ["Engineering"]
    # Per other tag, one Remove call with exactly the machines that had it; then one Add for those lacking the tag.
    assert writes(emulator) == [
        (BULK, {"Value": t, "Action": "Remove", "MachineIds": [i for i in ids if t in before[i]]}) for t in others
    ] + [(BULK, {"Value": "Engineering", "Action": "Add", "MachineIds": [i for i in ids if "Engineering" not in before[i]]})]


# -- bad input and permissions -----------------------------------------------------------------------------
def test_bad_input_fails_before_any_call(ansible, emulator):
    # More cases of the same validation are unit tests (tests/unit/plugins/modules/test_mde_machine.py).
    mid = onboarded(emulator, 1)[0]["id"]
    cases = {
        "bad device value": (dict(machine_id=mid, device_value="Critical"), "device_value"),
        "empty tag": (dict(machine_id=mid, tags=["ok", ""]), "empty tag"),
        "two selectors": (dict(machine_id=mid, machine_name="ws-00000", tags=["x"]), "mutually exclusive"),
        "id and ids": (dict(machine_id=mid, machine_ids=[mid], tags=["x"]), "mutually exclusive"),
        "no selector": (dict(tags=["x"]), "one of the following is required"),
        "nothing to do": (dict(machine_id=mid), "one of the following is required: tags, device_value"),
        "purge with absent": (dict(machine_id=mid, tags=["x"], state="absent", purge_tags=True), "purge_tags"),
        "empty id in list": (dict(machine_ids=[mid, " "], tags=["x"]), "empty ids"),
        # security review: ids must be device ids, tags must be safe to send, before any call
        "dot as id": (dict(machine_id=".", tags=["x"]), "machine_id must be a Defender device id"),
        "path as id": (dict(machine_id="../alerts", device_value="Low"), "machine_id must be a Defender device id"),
        "bad id in list": (dict(machine_ids=[mid, ".."], tags=["x"]), "1 of the 2 items are not: item 2 '..'"),
        "tag with CR LF after a good one": (dict(machine_id=mid, tags=["Good", "bad\r\nX-Injected: 1"]),
                                            "tags must not contain control characters"),
        "tag with NUL": (dict(machine_id=mid, tags=["nul\x00"]), "tags item 1 must not contain control characters"),
        "tag too long": (dict(machine_id=mid, tags=["x" * 201]), "tags must be at most 200 characters long"),
        "name with LF": (dict(machine_name="ws-00000\nx", tags=["x"]), "machine_name must not contain control"),
    }
    result = ansible.playbook(tasks=[failing(name, **args) for name, (args, _words) in cases.items()])
    for name, (_args, words) in cases.items():
        res = result.task(name)
        assert res.get("failed") is True, (name, res)
        assert words in res["msg"], (name, res["msg"])
    assert emulator.log == []                            # not even a token request


def test_readonly_app_gets_the_permission_named_and_check_mode_still_works(ansible, emulator):
    machine = onboarded(emulator, 1)[0]
    result = ansible.playbook(app="readonly", tasks=[
        dict(task("check", machine_id=machine["id"], tags=["RO"]), check_mode=True),
        failing("write", machine_id=machine["id"], tags=["RO"]),
        failing("write list", machine_ids=[machine["id"]], device_value="Low" if machine["deviceValue"] != "Low"
                else "High"),
    ])
    assert result.task("check")["changed"] is True
    for name in ("write", "write list"):
        res = result.task(name)
        assert res["failed"] is True and res["status"] == 403
        assert "Machine.ReadWrite.All" in res["msg"] and res["permission"] == "Machine.ReadWrite.All"
    noperm = ansible.playbook(app="noperm", tasks=[failing("read", machine_id=machine["id"], tags=["RO"])])
    res = noperm.task("read")
    assert res["failed"] is True and res["status"] == 403 and res["permission"] == "Machine.ReadWrite.All"
    assert "mde_machine needs the application permission Machine.ReadWrite.All" in res["msg"]
    assert [e["status"] for e in emulator.writes()] == [403, 403]
    assert by_id(emulator, machine["id"])["machineTags"] == machine["machineTags"]


# -- many machines: at most 500 ids a bulk call ------------------------------------------------------------
@pytest.fixture(scope="module")
def big_emulator(tmp_path_factory):
    emu = Emulator(state_dir=tmp_path_factory.mktemp("mde-emulator-700"), machines=700, seed=2)
    emu.start()
    yield emu
    emu.stop()


def test_600_machines_are_tagged_500_ids_a_call(big_emulator, tmp_path):
    emu = big_emulator
    emu.reset()
    ansible = Ansible(emu, tmp_path)
    ids = [m["id"] for m in emu.machines[:600]]
    few = [m["id"] for m in emu.machines[600:700]]
    had_vpn = [m["id"] for m in emu.machines[600:700] if "VPN" in m["machineTags"]]
    assert len(had_vpn) == 20
    result = ansible.playbook(tasks=[
        task("tag 600", machine_ids=ids, tags=["Bulk"]),
        task("tag 600 again", machine_ids=ids, tags=["Bulk"]),
        task("untag 100", machine_ids=few, tags=["VPN"], state="absent"),
    ])
    assert result.rc == 0, result
    first = result.task("tag 600")
    assert first["changed"] is True and len(first["updated_ids"]) == 600
    assert [m["id"] for m in first["machines"]] == ids and all("Bulk" in m["machineTags"] for m in first["machines"])
    assert result.task("tag 600 again")["changed"] is False
    assert not any("VPN" in m["machineTags"] for m in emu.machines[600:700])
    bodies = [e["body"] for e in emu.writes()]
    assert [(b["Value"], b["Action"], len(b["MachineIds"])) for b in bodies][:2] == [("Bulk", "Add", 500),
                                                                                     ("Bulk", "Add", 100)]
    assert bodies[0]["MachineIds"] + bodies[1]["MachineIds"] == ids
    assert len(bodies) == 3 and bodies[2] == {"Value": "VPN", "Action": "Remove", "MachineIds": had_vpn}
    assert all(len(b["MachineIds"]) <= 500 for b in bodies)
    reads = [e for e in emu.log if e["method"] == "GET" and e["path"] == "/api/machines"]
    # 600 ids: one listing of the 700 machines (one page) per run; 100 ids: two filtered reads of 50.
    assert [("$filter" in e["query"]) for e in reads] == [False, False, True, True]
    assert all(e["status"] == 200 for e in emu.log if e["path"].startswith("/api/"))
