"""mde_machine and module_utils/machines: validation, tag planning, bulk chunking (<= 500 ids), reading by id."""
import json
import os

import pytest

from ansible_collections.defender.endpoint.plugins.module_utils import machines as mu
from ansible_collections.defender.endpoint.plugins.modules import mde_machine as module_file

SAMPLES = "/work/shared/mde-api/samples"
MID = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"


def sample(name):
    path = os.path.join(SAMPLES, name)
    if not os.path.exists(path):
        pytest.skip("API samples not available")
    with open(path) as f:
        return json.load(f)


def machine_id(i):
    return "%040x" % (i + 1)


# -- validation ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, words", [
    (dict(machine_id=MID), "nothing to do"),
    (dict(machine_id=MID, tags=["a", ""]), "empty tag (item 2)"),
    (dict(machine_id=MID, tags=["  "]), "empty tag (item 1)"),
    (dict(machine_id=MID, tags=[None]), "empty tag"),
    (dict(machine_id=MID, device_value="Critical"), "device_value must be one of Normal, Low, High"),
    (dict(machine_id=MID, device_value="high"), "device_value must be one of"),
    (dict(machine_id=MID, tags=["a"], state="gone"), "state must be one of"),
    (dict(machine_id=MID, tags=["a"], state="absent", purge_tags=True), "only used with state: present"),
    (dict(machine_id=MID, device_value="Low", purge_tags=True), "purge_tags needs tags"),
    (dict(machine_id=" ", tags=["a"]), "machine_id must not be empty"),
    (dict(machine_name="", tags=["a"]), "machine_name must not be empty"),
    (dict(machine_id=MID, machine_name="ws1", tags=["a"]), "exactly one of"),
    (dict(machine_id=MID, machine_ids=[MID], tags=["a"]), "exactly one of"),
    (dict(tags=["a"]), "exactly one of"),
    (dict(machine_ids=[], tags=["a"]), "at least one"),
    (dict(machine_ids=[MID, "", None], tags=["a"]), "empty ids (item 2, 3)"),
])
def test_validate_rejects(kwargs, words):
    with pytest.raises(ValueError) as e:
        mu.validate(**kwargs)
    assert words in str(e.value)


@pytest.mark.parametrize("kwargs", [
    dict(machine_id=MID, tags=["a"]),
    dict(machine_name="ws1", device_value="High"),
    dict(machine_ids=[MID], tags=[], purge_tags=True),
    dict(machine_ids=[MID, MID.upper()], tags=["a"], state="absent", device_value="Normal"),
])
def test_validate_accepts(kwargs):
    mu.validate(**kwargs)


# -- planning ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("current, tags, state, purge, expected", [
    (["a", "b"], ["b", "c", "c"], "present", False, (["c"], [])),
    (["a", "b"], ["b", "c"], "present", True, (["c"], ["a"])),
    (["a", "b"], [], "present", True, ([], ["a", "b"])),
    (["a", "b"], ["b", "x"], "absent", False, ([], ["b"])),
    (None, ["a"], "present", False, (["a"], [])),
    (["Finance"], ["finance"], "present", False, (["finance"], [])),   # tags compare exactly
    (["a"], ["a"], "present", True, ([], [])),
])
def test_plan_tags(current, tags, state, purge, expected):
    assert mu.plan_tags(current, tags, state, purge) == expected


def test_tags_after_keeps_order_and_appends():
    assert mu.tags_after(["a", "b", "c"], ["d"], ["b"]) == ["a", "c", "d"]
    assert mu.tags_after(None, ["d"], []) == ["d"]


def test_bulk_calls_group_per_tag_and_never_exceed_500_ids():
    ids = [machine_id(i) for i in range(1234)]
    plans = [(i, ["new"] if n % 3 else ["new", "other"], ["old"] if n < 600 else []) for n, i in enumerate(ids)]
    bodies = mu.bulk_calls(plans, tags=["new", "other"])
    assert all(len(b["MachineIds"]) <= 500 for b in bodies)
    summary = [(b["Value"], b["Action"], len(b["MachineIds"])) for b in bodies]
    assert summary == [("old", "Remove", 500), ("old", "Remove", 100),
                       ("new", "Add", 500), ("new", "Add", 500), ("new", "Add", 234),
                       ("other", "Add", 412)]
    assert sum((b["MachineIds"] for b in bodies if b["Value"] == "new"), []) == ids
    assert sum((b["MachineIds"] for b in bodies if b["Value"] == "other"), []) == ids[::3]


def test_bulk_calls_add_in_the_order_of_tags_even_when_first_machine_has_the_first_tag():
    bodies = mu.bulk_calls([("m1", ["b"], []), ("m2", ["a", "b"], [])], tags=["a", "b"])
    assert [(b["Value"], b["MachineIds"]) for b in bodies] == [("a", ["m2"]), ("b", ["m1", "m2"])]


def test_bulk_body_has_the_documented_shape():
    documented = sample("machines_tags_multiple_request.json")
    body, = mu.bulk_calls([(i, [documented["Value"]], []) for i in documented["MachineIds"]], [documented["Value"]])
    assert body == documented


# -- reading many machines -----------------------------------------------------------------------------
class ListingClient:
    """client.list over a fixed set of machines; records each call (one call = one or more pages)."""

    def __init__(self, machines):
        self.machines = machines
        self.calls = []
        self.posts = []

    def list(self, path, odata_filter=None, empty_on_404=False, **kwargs):
        self.calls.append((path, odata_filter))
        if odata_filter is None:
            return iter(self.machines)
        wanted = [part.split("'")[1] for part in odata_filter.strip("()").split(" or ")]
        return iter([m for m in self.machines if m["id"] in wanted])

    def post(self, path, json=None, retry_safe=False):
        assert retry_safe is True                        # tag and device value changes are safe to repeat
        self.posts.append((path, json))
        if path.endswith("AddOrRemoveTagForMultipleMachines"):
            changed = []
            for m in self.machines:
                if m["id"] in json["MachineIds"]:
                    m["machineTags"] = mu.tags_after(m["machineTags"], [json["Value"]] if json["Action"] == "Add"
                                                     else [], [json["Value"]] if json["Action"] == "Remove" else [])
                    changed.append(dict(m))
            return {"@odata.context": "x", "value": changed}
        machine = next(m for m in self.machines if m["id"] == path.split("/")[3])
        if path.endswith("/setDeviceValue"):
            machine["deviceValue"] = json["DeviceValue"]
        elif json["Action"] == "Add":
            machine["machineTags"] = mu.tags_after(machine["machineTags"], [json["Value"]], [])
        else:
            machine["machineTags"] = mu.tags_after(machine["machineTags"], [], [json["Value"]])
        return dict(machine, **{"@odata.context": "https://x/api/$metadata#Machines/$entity"})


def fleet(n):
    return [{"id": machine_id(i), "machineTags": ["even"] if i % 2 == 0 else [], "deviceValue": "Normal"}
            for i in range(n)]


def test_read_by_ids_uses_filters_of_50_below_500_ids():
    client = ListingClient(fleet(1000))
    ids = [machine_id(i) for i in range(0, 996, 2)] + [machine_id(0).upper(), "f" * 40]   # 498 known + 1 unknown
    found = mu.read_by_ids(client, ids)
    assert len(found) == 498 and "f" * 40 not in found
    assert len(client.calls) == 10 and all(f and f.count(" or ") <= 49 for _p, f in client.calls)


def test_read_by_ids_lists_every_machine_from_500_ids_on():
    client = ListingClient(fleet(1000))
    found = mu.read_by_ids(client, [machine_id(i) for i in range(500)])
    assert len(found) == 500 and client.calls == [("/api/machines", None)]


# -- the module's run with a fake module ---------------------------------------------------------------
class FakeModule:
    def __init__(self, client, check_mode=False, **params):
        self.params = dict(machine_id=None, machine_name=None, machine_ids=None, tags=None, state="present",
                           purge_tags=False, device_value=None)
        self.params.update(params)
        self.client = client
        self.check_mode = check_mode

    def find_machine(self, machine_id=None, machine_name=None):
        return dict(next(m for m in self.client.machines if m["id"] == machine_id))

    def fail_json(self, **kw):
        raise AssertionError(kw)


def test_run_many_machines_bulk_and_device_value_then_nothing_on_rerun():
    client = ListingClient(fleet(1200))
    ids = [machine_id(i) for i in range(1100)]
    for m in client.machines[:3]:
        m["deviceValue"] = "High"
    module = FakeModule(client, machine_ids=ids, tags=["even", "wave"], device_value="High")
    result = module_file.run(module)
    assert result["changed"] is True and len(result["updated_ids"]) == 1100
    tag_posts = [body for path, body in client.posts if path.endswith("AddOrRemoveTagForMultipleMachines")]
    assert [(b["Value"], len(b["MachineIds"])) for b in tag_posts] == [("even", 500), ("even", 50),
                                                                       ("wave", 500), ("wave", 500), ("wave", 100)]
    value_posts = [path for path, _body in client.posts if path.endswith("/setDeviceValue")]
    assert len(value_posts) == 1097
    assert all(m["deviceValue"] == "High" and "wave" in m["machineTags"] for m in result["machines"])
    assert all("@odata.context" not in m for m in result["machines"])
    client.posts = []
    again = module_file.run(FakeModule(client, machine_ids=ids, tags=["even", "wave"], device_value="High"))
    assert again["changed"] is False and client.posts == []


def test_run_check_mode_writes_nothing_and_returns_the_planned_entities():
    client = ListingClient(fleet(4))
    ids = [machine_id(i) for i in range(4)]
    result = module_file.run(FakeModule(client, check_mode=True, machine_ids=ids, tags=["even"], purge_tags=True,
                                        device_value="Low"))
    assert client.posts == [] and result["changed"] is True
    assert [m["machineTags"] for m in result["machines"]] == [["even"]] * 4
    assert result["diff"]["before"][ids[1]] == {"machineTags": [], "deviceValue": "Normal"}
    assert result["diff"]["after"][ids[1]] == {"machineTags": ["even"], "deviceValue": "Low"}
    assert all(m["machineTags"] == (["even"] if i % 2 == 0 else []) for i, m in enumerate(client.machines))


def test_run_one_machine_one_tags_call_per_change_and_returns_the_last_answer():
    client = ListingClient([{"id": MID, "machineTags": ["a", "b"], "deviceValue": "Normal"}])
    result = module_file.run(FakeModule(client, machine_id=MID, tags=["b", "c"], purge_tags=True, device_value="High"))
    assert client.posts == [
        ("/api/machines/%s/tags" % MID, {"Value": "a", "Action": "Remove"}),
        ("/api/machines/%s/tags" % MID, {"Value": "c", "Action": "Add"}),
        ("/api/machines/%s/setDeviceValue" % MID, {"DeviceValue": "High"}),
    ]
    assert result["machine"] == {"id": MID, "machineTags": ["b", "c"], "deviceValue": "High"}


def test_single_bodies_match_the_documented_requests():
    tag = sample("machine_tags_add_request.json")
    value = sample("machine_set_device_value_request.json")
    client = ListingClient([{"id": MID, "machineTags": [], "deviceValue": "Normal"}])
    module_file.run(FakeModule(client, machine_id=MID, tags=[tag["Value"]], device_value=value["DeviceValue"]))
    assert [body for _path, body in client.posts] == [tag, value]


def test_bulk_answer_without_machines_is_followed_by_one_read():
    class EmptyAnswer(ListingClient):
        def post(self, path, json=None, retry_safe=False):
            super(EmptyAnswer, self).post(path, json=json, retry_safe=retry_safe)
            return None

    client = EmptyAnswer(fleet(6))
    ids = [machine_id(i) for i in range(6)]
    result = module_file.run(FakeModule(client, machine_ids=ids, tags=["new"]))
    assert len(client.calls) == 2                        # the first read, then one read of the changed machines
    assert all("new" in m["machineTags"] for m in result["machines"])
