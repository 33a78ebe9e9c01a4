"""mde_machine and module_utils/machines: validation, tag planning, bulk chunking (<= 500 ids), reading by id."""
import pytest

from ansible_collections.defender.endpoint.plugins.module_utils import machines as mu
from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEError
from ansible_collections.defender.endpoint.plugins.module_utils.context import Context
from ansible_collections.defender.endpoint.plugins.modules import mde_machine as module_file
from ansible_collections.defender.endpoint.tests.unit.fixtures.microsoft import sample
from tests.unit.helpers import refusal

MID = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"


def machine_id(i):
    return "%040x" % (i + 1)


# -- validation ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, words", [
    (dict(machine_id=MID), "one of the following is required: tags, device_value"),
    (dict(machine_id=MID, tags=["a", ""]), "empty tag (item 2)"),
    (dict(machine_id=MID, tags=["  "]), "empty tag (item 1)"),
    (dict(machine_id=MID, tags=[None]), "tags"),  # refused by the core's validator before 2.19, by ours after
    (dict(machine_id=MID, device_value="Critical"), "device_value must be one of: Normal, Low, High, got: Critical"),
    (dict(machine_id=MID, device_value="high"), "device_value must be one of"),
    (dict(machine_id=MID, tags=["a"], state="gone"), "state must be one of"),
    (dict(machine_id=MID, tags=["a"], state="absent", purge_tags=True), "only used with state: present"),
    (dict(machine_id=MID, device_value="Low", purge_tags=True), "purge_tags is True but all of the following are missing: tags"),
    (dict(machine_id=" ", tags=["a"]), "machine_id must not be empty"),
    (dict(machine_name="", tags=["a"]), "machine_name must not be empty"),
    (dict(machine_id=MID, machine_name="ws1", tags=["a"]), "mutually exclusive: machine_id|machine_name|machine_ids"),
    (dict(machine_id=MID, machine_ids=[MID], tags=["a"]), "mutually exclusive: machine_id|machine_name|machine_ids"),
    (dict(tags=["a"]), "one of the following is required: machine_id, machine_name, machine_ids"),
    (dict(machine_ids=[], tags=["a"]), "at least one"),
    (dict(machine_ids=[MID, "", " "], tags=["a"]), "empty ids (item 2, 3)"),
])
def test_validate_rejects(kwargs, words):
    """What a task is refused for before any call: by the argument spec (choices, which options go together, which
    one needs another) or by the module's checks (ids, names, tags)."""
    assert words in refusal(module_file, kwargs)


@pytest.mark.parametrize("kwargs", [
    dict(machine_id=MID, tags=["a"]),
    dict(machine_name="ws1", device_value="High"),
    dict(machine_ids=[MID], tags=[], purge_tags=True),
    dict(machine_ids=[MID, MID.upper()], tags=["a"], state="absent", device_value="Normal"),
])
def test_validate_accepts(kwargs):
    assert refusal(module_file, kwargs) == ""


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

    def post(self, path, json=None, reconcile=None):
        assert callable(reconcile)                       # every tag and device value change is reconciled
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
class FakeModule(Context):
    """The Context a module's run() gets, over a fake client; a failure raises AssertionError with its facts."""

    def __init__(self, client, check_mode=False, **params):
        defaults = dict(machine_id=None, machine_name=None, machine_ids=None, tags=None, state="present",
                        purge_tags=False, device_value=None)
        defaults.update(params)
        super(FakeModule, self).__init__(defaults, check_mode=check_mode)
        self._client = client

    def fail_json(self, msg=None, **kw):
        kw["msg"] = msg
        raise AssertionError(kw)


@pytest.fixture(autouse=True)
def machines_by_id(monkeypatch):
    """find_machine over the fake client's machines (the real one reads GET /api/machines/{id})."""
    monkeypatch.setattr(mu, "find_machine", lambda client, machine_id=None, machine_name=None, **kw: dict(
        next(m for m in client.machines if m["id"] == machine_id)))


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
        def post(self, path, json=None, reconcile=None):
            super(EmptyAnswer, self).post(path, json=json, reconcile=reconcile)
            return None

    client = EmptyAnswer(fleet(6))
    ids = [machine_id(i) for i in range(6)]
    result = module_file.run(FakeModule(client, machine_ids=ids, tags=["new"]))
    assert len(client.calls) == 2                        # the first read, then one read of the changed machines
    assert all("new" in m["machineTags"] for m in result["machines"])


# -- input hardening: ids, tags and the size of messages ---------------------------------------------------
@pytest.mark.parametrize("kwargs, words", [
    (dict(machine_id=".", tags=["a"]), "machine_id must be a Defender device id, 40 hexadecimal characters"),
    (dict(machine_id="..", tags=["a"]), "got '..'"),
    (dict(machine_id="../machineactions", tags=["a"]), "machine_id must be a Defender device id"),
    (dict(machine_id=MID + "?$top=1", tags=["a"]), "machine_id must be a Defender device id"),
    (dict(machine_id=MID[:-1], tags=["a"]), "machine_id must be a Defender device id"),
    (dict(machine_id=MID + "0", tags=["a"]), "machine_id must be a Defender device id"),
    (dict(machine_id="g" * 40, tags=["a"]), "machine_id must be a Defender device id"),
    (dict(machine_id=MID + "\n", tags=["a"]), "machine_id must not contain control characters"),
    (dict(machine_name="ws1\r\nx", tags=["a"]), "machine_name must not contain control characters"),
    (dict(machine_ids=[MID, ".", "abc"], tags=["a"]), "2 of the 3 items are not: item 2 '.', item 3 'abc'"),
    (dict(machine_id=MID, tags=["ok", "bad\r\nX-Injected: 1"]), "tags must not contain control characters such as "
     "CR, LF or NUL: item 2 'bad\\r\\nX-Injected: 1'"),
    (dict(machine_id=MID, tags=["nul\x00"]), "item 1 'nul\\x00'"),
    (dict(machine_id=MID, tags=["line\u2028separator"]), "tags must not contain control characters"),
    (dict(machine_id=MID, tags=["x" * 201]), "tags must be at most 200 characters long: item 1 has 201"),
])
def test_validate_refuses_ids_and_tags_that_could_not_be_sent_safely(kwargs, words):
    text = refusal(module_file, kwargs)
    assert words in text
    assert "\n" not in text and "\r" not in text and "\x00" not in text


def test_validate_accepts_a_tag_of_200_characters_and_an_upper_case_id_with_blanks_around():
    assert refusal(module_file, dict(machine_id=" %s " % MID.upper(), tags=["x" * 200, "Wave 2 (Finance)"])) == ""
    assert mu.check_machine_id(" %s " % MID.upper()) == MID


def test_many_bad_ids_are_counted_not_all_listed():
    text = refusal(module_file, dict(machine_ids=["bad%d" % i for i in range(10000)], tags=["a"]))
    assert "10000 of the 10000 items are not: item 1 'bad0'" in text and "and 9995 more" in text
    assert len(text) < 400


def test_10000_unknown_machine_ids_name_the_first_five_and_the_count():
    client = ListingClient(fleet(3))
    ids = [machine_id(i) for i in range(3)] + [machine_id(100 + i) for i in range(10000)]
    with pytest.raises(AssertionError) as e:
        module_file.run(FakeModule(client, machine_ids=ids, tags=["a"]))
    facts = e.value.args[0]
    assert facts["msg"].startswith("10000 of the 10003 machine ids are not in Defender for Endpoint; nothing was "
                                   "changed: %s, " % machine_id(100))
    assert "and 9995 more (missing_ids lists them all)." in facts["msg"] and len(facts["msg"]) < 400
    assert len(facts["missing_ids"]) == 10000 and client.posts == []


class Refused(ListingClient):
    """Refuses the write calls after the first ``allowed`` ones."""

    def __init__(self, machines, allowed):
        super(Refused, self).__init__(machines)
        self.allowed = allowed

    def post(self, path, json=None, reconcile=None):
        if len(self.posts) >= self.allowed:
            self.posts.append((path, json))
            raise MDEError("POST %s failed: HTTP 400 InvalidRequestBody." % path, status=400,
                           code="InvalidRequestBody", method="POST", path=path)
        return super(Refused, self).post(path, json=json, reconcile=reconcile)


PartwayModule = FakeModule


def test_one_machine_failing_after_a_write_reports_changed_and_the_machine():
    client = Refused([{"id": MID, "machineTags": [], "deviceValue": "Normal"}], allowed=1)
    with pytest.raises(AssertionError) as e:
        module_file.run(PartwayModule(client, machine_id=MID, tags=["first", "second"]))
    facts = e.value.args[0]
    assert facts["changed"] is True and facts["updated_ids"] == [MID]
    assert "1 of the 1 machines to change had been changed before this call" in facts["msg"]
    assert facts["status"] == 400 and facts["path"] == "/api/machines/%s/tags" % MID
    assert client.machines[0]["machineTags"] == ["first"]


def test_one_machine_failing_on_the_first_write_reports_unchanged():
    client = Refused([{"id": MID, "machineTags": [], "deviceValue": "Normal"}], allowed=0)
    with pytest.raises(AssertionError) as e:
        module_file.run(PartwayModule(client, machine_id=MID, tags=["first"], device_value="High"))
    facts = e.value.args[0]
    assert facts["changed"] is False and facts["updated_ids"] == []
    assert "0 of the 1 machines" in facts["msg"]
