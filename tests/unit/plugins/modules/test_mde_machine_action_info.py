"""mde_machine_action_info: the $filter it builds and the package download (no token, mode 0600, atomic)."""
import hashlib
import os
import stat

import pytest

from ansible_collections.defender.endpoint.plugins.modules import mde_machine_action_info as info
from ansible_collections.defender.endpoint.plugins.module_utils.client import MDEClient
from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEError
# The streamed answers and the session that client.download() reads, as the client's own tests script them.
from ansible_collections.defender.endpoint.tests.unit.plugins.module_utils.test_client import StreamResponse, StreamSession


def params(**kw):
    p = dict(machine_id=None, type=None, status=None, requestor=None, created_after=None)
    p.update(kw)
    return p


def test_filter_from_options():
    assert info.build_filter(params()) is None
    assert info.build_filter(params(machine_id="abc", type=["Isolate", "Unisolate"], status=["Pending"],
                                    requestor="o'neil@contoso.com", created_after="2026-01-31T08:00:00+01:00")) == (
        "machineId eq 'abc' and (type eq 'Isolate' or type eq 'Unisolate') and status eq 'Pending' and "
        "requestor eq 'o''neil@contoso.com' and creationDateTimeUtc ge 2026-01-31T07:00:00Z")


class NoTokens:
    refreshable = False

    def get_token(self, force_refresh=False):
        raise AssertionError("a pre-signed download must not ask for a token")

    def describe(self):
        return "none"


class FakeModule:
    def __init__(self, session):
        self.client = MDEClient("https://api.example.test", NoTokens(), session, sleep=lambda s: None)

    def fail_json(self, **kw):
        raise AssertionError(kw)


def headers_sent(prepared_auth, kwargs):
    """The headers a request would carry once requests applied its auth hook (with an Authorization to remove)."""
    prepared = type("P", (), {})()
    prepared.headers = dict(kwargs.get("headers") or {}, Authorization="Bearer leaked")
    return prepared_auth(prepared).headers


def test_download_goes_through_the_client_writes_0600_and_sends_no_token(tmp_path):
    session = StreamSession(StreamResponse(200, [b"PK\x03\x04", b"rest"]))
    dest = tmp_path / "pkg.zip"
    facts = info.download(FakeModule(session), "https://dl.example.test/p.zip?sig=SECRET", str(dest))
    assert dest.read_bytes() == b"PK\x03\x04rest"
    assert facts == dict(size=8, sha256=hashlib.sha256(b"PK\x03\x04rest").hexdigest())
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o600
    kwargs, = session.calls
    assert (kwargs["method"], kwargs["url"]) == ("GET", "https://dl.example.test/p.zip?sig=SECRET")
    assert kwargs["stream"] is True
    assert "Authorization" not in (kwargs.get("headers") or {})
    assert "Authorization" not in headers_sent(kwargs["auth"], kwargs)
    assert os.listdir(tmp_path) == ["pkg.zip"]


def test_download_failure_leaves_no_file_and_hides_the_sas_token(tmp_path):
    dest = tmp_path / "pkg.zip"
    with pytest.raises(MDEError) as e:
        info.download(FakeModule(StreamSession(StreamResponse(403, []))), "https://dl.example.test/p.zip?sig=SECRET",
                      str(dest))
    assert "HTTP 403" in str(e.value) and "SECRET" not in str(e.value)
    assert "https://dl.example.test/p.zip" in str(e.value)
    assert os.listdir(tmp_path) == []
    broken = [StreamResponse(200, [b"x", IOError("https://dl.example.test/p.zip?sig=SECRET")]) for _i in range(6)]
    with pytest.raises(MDEError) as e:
        info.download(FakeModule(StreamSession(*broken)), "https://dl.example.test/p.zip?sig=SECRET", str(dest))
    assert "SECRET" not in str(e.value)
    assert os.listdir(tmp_path) == []


def test_download_refuses_plain_http(tmp_path):
    session = StreamSession(StreamResponse(200, [b"x"]))
    with pytest.raises(MDEError, match="not a plain https"):
        info.download(FakeModule(session), "http://dl.example.test/p.zip?sig=SECRET", str(tmp_path / "p.zip"))
    assert session.calls == []
