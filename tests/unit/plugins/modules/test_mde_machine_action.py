"""Machine actions: input validation, PascalCase bodies, state detection, duplicate detection and polling."""
import pytest

from ansible_collections.defender.endpoint.plugins.module_utils.context import Context

from ansible_collections.defender.endpoint.plugins.module_utils import machine_actions as ma
from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEError
from ansible_collections.defender.endpoint.plugins.modules import mde_machine_action as module_file
from ansible_collections.defender.endpoint.tests.unit.fixtures.microsoft import sample
from tests.unit.helpers import spec_errors

SHA1 = "87662bc3d60e4200ceaf7aae249d1c343f4b83c9"


# -- validation ----------------------------------------------------------------------------------------
MID = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"


@pytest.mark.parametrize("args, words", [
    (dict(machine_id=MID, action="reboot"), ["action must be one of: isolate, ", "got: reboot"]),
    (dict(machine_id=MID, action="stop_and_quarantine_file"),
     ["action is stop_and_quarantine_file but all of the following are missing: sha1"]),
    (dict(machine_id=MID, action="isolate", isolation_type="full"), ["isolation_type must be one of: Full, Selective"]),
    (dict(machine_id=MID, action="antivirus_scan", scan_type="Deep"), ["scan_type must be one of: Quick, Full"]),
    (dict(machine_id=MID, action="isolate", wait_timeout="soon"), ["wait_timeout", "int"]),
    (dict(action="isolate"), ["one of the following is required: machine_id, machine_name"]),
    (dict(machine_id=MID, machine_name="ws-1", action="isolate"), ["mutually exclusive: machine_id|machine_name"]),
])
def test_the_argument_spec_refuses(args, words):
    """Shapes, choices and which options go together are the argument spec's (the same messages as any module's)."""
    text = spec_errors(module_file, args)
    assert all(w in text for w in words), text


def test_the_argument_spec_accepts_a_target_and_waits_600_seconds_by_default():
    assert spec_errors(module_file, dict(machine_id=MID, action="isolate")) == ""
    assert module_file.ARGUMENT_SPEC["wait_timeout"]["default"] == 600
    assert module_file.ARGUMENT_SPEC["wait"]["default"] is False


@pytest.mark.parametrize("kwargs, words", [
    (dict(action="stop_and_quarantine_file"), "40 hexadecimal"),
    (dict(action="stop_and_quarantine_file", sha1="abc"), "40 hexadecimal"),
    (dict(action="stop_and_quarantine_file", sha1="g" * 40), "40 hexadecimal"),
    (dict(action="stop_and_quarantine_file", sha1=SHA1 + "0"), "40 hexadecimal"),
    (dict(action="isolate", sha1=SHA1), "only used with action stop_and_quarantine_file"),
    (dict(action="offboard"), "set comment explicitly"),
    (dict(action="offboard", comment="   "), "set comment explicitly"),
    (dict(action="isolate", comment=""), "comment must not be empty"),
])
def test_validate_rejects(kwargs, words):
    with pytest.raises(ValueError, match=words):
        ma.validate(**kwargs)


@pytest.mark.parametrize("kwargs", [
    dict(action="isolate"),
    dict(action="stop_and_quarantine_file", sha1=SHA1.upper()),
    dict(action="offboard", comment="decommissioned"),
    dict(action="antivirus_scan"),
])
def test_validate_accepts(kwargs):
    ma.validate(**kwargs)


# -- bodies --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("action, kwargs, sample_name", [
    ("isolate", dict(comment="Isolate machine due to alert 1234", isolation_type="Full"),
     "machineaction_isolate_request.json"),
    ("unisolate", dict(comment="Unisolate machine since it was clean and validated"),
     "machineaction_unisolate_request.json"),
    ("restrict_code_execution", dict(comment="Restrict code execution due to alert 1234"),
     "machineaction_restrict_code_execution_request.json"),
    ("unrestrict_code_execution", dict(comment="Unrestrict code execution since machine was cleaned and validated"),
     "machineaction_unrestrict_code_execution_request.json"),
    ("antivirus_scan", dict(comment="Check machine for viruses due to alert 3212", scan_type="Full"),
     "machineaction_run_av_scan_request.json"),
    ("collect_investigation_package", dict(comment="Collect forensics due to alert 1234"),
     "machineaction_collect_investigation_package_request.json"),
    ("offboard", dict(comment="Offboard machine by automation"), "machineaction_offboard_request.json"),
    ("stop_and_quarantine_file", dict(comment="Stop and quarantine file on machine due to alert "
                                      "441688558380765161_2136280442", sha1=SHA1),
     "machineaction_stop_and_quarantine_file_request.json"),
])
def test_body_matches_documented_request(action, kwargs, sample_name):
    assert ma.build_body(action, **kwargs) == sample(sample_name)


def test_body_defaults():
    assert ma.build_body("isolate") == {"Comment": ma.DEFAULT_COMMENT, "IsolationType": "Full"}
    assert ma.build_body("antivirus_scan") == {"Comment": ma.DEFAULT_COMMENT, "ScanType": "Quick"}
    assert ma.build_body("stop_and_quarantine_file", comment="x", sha1=" " + SHA1.upper()) == {"Comment": "x", "Sha1": SHA1}
    assert "Ansible" in ma.DEFAULT_COMMENT


def test_paths_and_permissions_match_the_client_table():
    from ansible_collections.defender.endpoint.plugins.module_utils.client import required_permission
    for action, spec in ma.ACTIONS.items():
        path = ma.action_path(action, "abc")
        assert path == "/api/machines/abc/" + spec["segment"]
        assert required_permission("POST", path) == spec["permission"]


# -- state ---------------------------------------------------------------------------------------------
def act(type_, status, created, **extra):
    data = dict(id="%s-%s" % (type_, created), type=type_, status=status, creationDateTimeUtc=created,
                machineId="m1", computerDnsName="ws1")
    data.update(extra)
    return data


def test_pair_state_latest_live_action_decides():
    history = [
        act("Isolate", "Succeeded", "2026-01-01T10:00:00.1234567Z"),
        act("Unisolate", "Succeeded", "2026-01-01T11:00:00Z"),
        act("Isolate", "Pending", "2026-01-01T12:00:00.5Z"),
        act("Unisolate", "Failed", "2026-01-01T13:00:00Z"),   # failed: changed nothing
        act("Unisolate", "Cancelled", "2026-01-01T14:00:00Z"),
    ]
    state, deciding = ma.pair_state("isolate", history)
    assert state is True and deciding["creationDateTimeUtc"] == "2026-01-01T12:00:00.5Z"
    assert ma.pair_state("unisolate", history[:2])[0] is False


def test_pair_state_orders_by_time_not_by_list_position():
    history = [act("Unisolate", "Succeeded", "2026-01-01T11:00:00.0000002Z"),
               act("Isolate", "Succeeded", "2026-01-01T11:00:00.0000001Z"),
               act("Isolate", "Succeeded", "2026-01-01T12:00:00+02:00")]  # 10:00 UTC: the oldest
    state, deciding = ma.pair_state("isolate", history)
    assert state is False and deciding["type"] == "Unisolate"


def test_pair_state_without_history_is_released():
    assert ma.pair_state("restrict_code_execution", []) == (False, None)
    assert ma.pair_state("offboard", [act("Offboard", "Failed", "2026-01-01T10:00:00Z")]) == (False, None)
    assert ma.pair_state("offboard", [act("Offboard", "InProgress", "2026-01-01T10:00:00Z")])[0] is True


def test_same_action_compares_scan_type_and_file():
    scan = act("RunAntiVirusScan", "Pending", "2026-01-01T10:00:00Z", scope="Full")
    assert ma.same_action("antivirus_scan", dict(scan_type="Full"), scan)
    assert not ma.same_action("antivirus_scan", dict(scan_type="Quick"), scan)
    quarantine = act("StopAndQuarantineFile", "Pending", "2026-01-01T10:00:00Z",
                     relatedFileInfo={"fileIdentifier": SHA1, "fileIdentifierType": "Sha1"})
    assert ma.same_action("stop_and_quarantine_file", dict(sha1=SHA1.upper()), quarantine)
    assert not ma.same_action("stop_and_quarantine_file", dict(sha1="0" * 40), quarantine)
    assert not ma.same_action("collect_investigation_package", {}, scan)


def test_machine_filter_uses_documented_fields():
    assert ma.machine_filter("m'1", ["Isolate", "Unisolate"]) == \
        "machineId eq 'm''1' and (type eq 'Isolate' or type eq 'Unisolate')"
    assert ma.machine_filter("m1", ["RunAntiVirusScan"], ma.ACTIVE_STATUSES) == \
        "machineId eq 'm1' and type eq 'RunAntiVirusScan' and (status eq 'Pending' or status eq 'InProgress')"


def test_already_pending_detection():
    assert ma.is_already_pending(MDEError("x", status=400, code="ActiveRequestAlreadyExists"))
    assert ma.is_already_pending(MDEError("x", status=400, code="BadRequest", api_message="Action is already in progress"))
    assert not ma.is_already_pending(MDEError("x", status=400, code="InvalidRequestBody", api_message="bad"))
    assert not ma.is_already_pending(MDEError("x", status=403, code="ActiveRequestAlreadyExists"))


def test_failure_text():
    failed = act("Isolate", "Failed", "2026-01-01T10:00:00Z", errorHResult=-2147467259)
    assert "errorHResult -2147467259" in ma.failure_text(failed)
    cancelled = act("Isolate", "Cancelled", "2026-01-01T10:00:00Z", errorHResult=0,
                    cancellationRequestor="analyst@contoso.com", cancellationComment="wrong machine")
    assert ma.failure_text(cancelled) == "cancelled by analyst@contoso.com: wrong machine"


# -- polling -------------------------------------------------------------------------------------------
class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds

    def __call__(self):
        return self.now


class ScriptedClient:
    def __init__(self, statuses):
        self.statuses = list(statuses)
        self.paths = []

    def get(self, path):
        self.paths.append(path)
        return dict(id="0a000000-0000-4000-8000-0000000000a1", type="Isolate", status=self.statuses.pop(0))


def test_wait_for_backs_off_until_final():
    clock = FakeClock()
    client = ScriptedClient(["Pending", "InProgress", "InProgress", "InProgress", "InProgress", "InProgress",
                             "InProgress", "Succeeded"])
    action, finished = ma.wait_for(client, dict(id="0a000000-0000-4000-8000-0000000000a1", status="Pending"), 600, sleep=clock.sleep, clock=clock)
    assert finished and action["status"] == "Succeeded"
    assert client.paths == ["/api/machineactions/0a000000-0000-4000-8000-0000000000a1"] * 8
    assert clock.sleeps[0] == 2.0
    assert clock.sleeps == sorted(clock.sleeps) and max(clock.sleeps) == 15.0


def test_wait_for_stops_at_timeout_without_overshooting():
    clock = FakeClock()
    client = ScriptedClient(["Pending"] * 100)
    action, finished = ma.wait_for(client, dict(id="0a000000-0000-4000-8000-0000000000a1", status="Pending"), 30, sleep=clock.sleep, clock=clock)
    assert not finished and action["status"] == "Pending"
    assert clock.now == 30


def test_wait_for_returns_final_action_without_polling():
    client = ScriptedClient([])
    action, finished = ma.wait_for(client, dict(id="a1", status="Failed"), 30, sleep=pytest.fail)
    assert finished and action["status"] == "Failed"


# -- package URI ---------------------------------------------------------------------------------------
def test_package_uri_unwrapped_from_documented_response():
    uri = ma.clean_package_uri(sample("machineaction_get_package_uri_response.json")["value"])
    assert uri.startswith("https://userrequests-us.securitycenter.windows.com:443/safedownload/")
    assert uri.endswith("%3d%3d")
    assert ma.clean_package_uri("https://x.test/p.zip?sig=1") == "https://x.test/p.zip?sig=1"


def test_latest_reads_api_times_and_puts_unreadable_ones_first():
    early = {"id": "a", "creationDateTimeUtc": "2019-01-02T14:39:38.2262283Z"}
    later = {"id": "b", "creationDateTimeUtc": "2019-01-02T16:39:38.5+02:00"}   # 14:39:38.5 UTC
    broken = {"id": "c", "creationDateTimeUtc": "garbage"}
    assert ma.latest([later, early, broken])["id"] == "b"
    assert ma.latest([broken, {"id": "d"}])["id"] == "c"
    assert ma.latest([]) is None


# -- the module's plan, over a scripted client ---------------------------------------------------------
class Failed(Exception):
    pass


class ScriptedApi:
    """list() answers from ``lists`` in order; post() raises or returns ``post_result``."""

    def __init__(self, lists, post_result):
        self.lists = list(lists)
        self.post_result = post_result
        self.calls = []

    def list(self, path, odata_filter=None, **kw):
        self.calls.append(("LIST", path, odata_filter))
        return iter(self.lists.pop(0))

    def post(self, path, json=None, **kw):
        self.calls.append(("POST", path, json))
        if isinstance(self.post_result, Exception):
            raise self.post_result
        return dict(self.post_result, **{"@odata.context": "x"})


class FakeModule(Context):
    def __init__(self, client, check_mode=False, **params):
        defaults = dict(machine_id="m1", machine_name=None, isolation_type="Full", scan_type="Quick", sha1=None,
                        comment=None, wait=False, wait_timeout=600)
        defaults.update(params)
        super(FakeModule, self).__init__(defaults, check_mode=check_mode)
        self._client = client

    def fail_json(self, msg=None, **kw):
        kw["msg"] = msg
        raise Failed(kw)


@pytest.fixture(autouse=True)
def one_machine(monkeypatch):
    from ansible_collections.defender.endpoint.plugins.module_utils import machines as mu
    monkeypatch.setattr(mu, "find_machine", lambda client, **kw: {"id": "m1", "computerDnsName": "ws1"})


PENDING = MDEError("POST failed", status=400, code="ActiveRequestAlreadyExists", api_message="Action is already in progress")


def test_post_meeting_already_pending_returns_the_pending_action():
    mine = act("RunAntiVirusScan", "Pending", "2026-01-01T10:00:00Z", scope="Quick")
    api = ScriptedApi([[], [mine]], PENDING)
    result = module_file.run(FakeModule(api, action="antivirus_scan"))
    assert result["changed"] is False and result["machine_action"] == mine
    assert [c[0] for c in api.calls] == ["LIST", "POST", "LIST"]
    assert api.calls[1][2] == {"Comment": ma.DEFAULT_COMMENT, "ScanType": "Quick"}


def test_post_meeting_a_different_pending_action_fails_naming_it():
    other = act("RunAntiVirusScan", "InProgress", "2026-01-01T10:00:00Z", scope="Full")
    with pytest.raises(Failed) as e:
        module_file.run(FakeModule(ScriptedApi([[], [other]], PENDING), action="antivirus_scan"))
    facts = e.value.args[0]
    assert other["id"] in facts["msg"] and "scope Full" in facts["msg"] and facts["error_code"] == "ActiveRequestAlreadyExists"


def test_stateful_post_meeting_already_pending_is_unchanged():
    pending = act("Isolate", "Pending", "2026-01-01T10:00:00Z", scope="Full")
    result = module_file.run(FakeModule(ScriptedApi([[], [pending]], PENDING), action="isolate"))
    assert result["changed"] is False and result["machine_action"] == pending
    assert result["diff"] == {"before": {"isolated": True}, "after": {"isolated": True}}


def test_other_errors_propagate_and_check_mode_never_posts():
    bad = MDEError("POST failed", status=400, code="OsPlatformNotSupported")
    with pytest.raises(MDEError):
        module_file.run(FakeModule(ScriptedApi([[]], bad), action="collect_investigation_package"))
    api = ScriptedApi([[]], {"id": "new"})
    result = module_file.run(FakeModule(api, check_mode=True, action="isolate"))
    assert result["changed"] is True and result["machine_action"] is None
    assert [c[0] for c in api.calls] == ["LIST"]
    assert api.calls[0][2] == ("machineId eq 'm1' and (type eq 'Isolate' or type eq 'Unisolate') and "
                               "(status eq 'Pending' or status eq 'InProgress' or status eq 'Succeeded')")


def test_sent_action_is_returned_without_odata_annotations():
    new = "0a000000-0000-4000-8000-0000000000b2"
    api = ScriptedApi([[]], {"id": new, "type": "Isolate", "status": "Pending"})
    result = module_file.run(FakeModule(api, action="isolate", isolation_type="UnManagedDevice", comment="c"))
    assert result["machine_action"] == {"id": new, "type": "Isolate", "status": "Pending"}
    assert api.calls[1] == ("POST", "/api/machines/m1/isolate", {"Comment": "c", "IsolationType": "UnManagedDevice"})
