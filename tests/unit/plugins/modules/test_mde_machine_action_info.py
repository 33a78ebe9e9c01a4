"""mde_machine_action_info: the $filter it builds and the package download (no token, mode 0600, atomic)."""
import os
import stat

import pytest

from ansible_collections.defender.endpoint.plugins.modules import mde_machine_action_info as info
from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEError


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


class FakeResponse:
    def __init__(self, status, chunks):
        self.status_code = status
        self.reason = "OK" if status == 200 else "Forbidden"
        self.chunks = chunks

    def iter_content(self, chunk_size):
        for chunk in self.chunks:
            if isinstance(chunk, Exception):
                raise chunk
            yield chunk

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class FakeSession:
    def __init__(self, response):
        self.response = response
        self.calls = []

    def get(self, url, **kwargs):
        self.calls.append((url, kwargs))
        return self.response


class FakeModule:
    def __init__(self, session):
        self.client = type("C", (), {"session": session})()

    def fail_json(self, **kw):
        raise AssertionError(kw)


def test_download_writes_0600_without_token(tmp_path):
    session = FakeSession(FakeResponse(200, [b"PK\x03\x04", b"rest"]))
    dest = tmp_path / "pkg.zip"
    info.download(FakeModule(session), "https://dl.example.test/p.zip?sig=SECRET", str(dest))
    assert dest.read_bytes() == b"PK\x03\x04rest"
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o600
    (url, kwargs), = session.calls
    assert url == "https://dl.example.test/p.zip?sig=SECRET" and kwargs["stream"] is True
    assert "Authorization" not in (kwargs.get("headers") or {})
    assert os.listdir(tmp_path) == ["pkg.zip"]


def test_download_failure_leaves_no_file_and_hides_the_sas_token(tmp_path):
    dest = tmp_path / "pkg.zip"
    with pytest.raises(MDEError) as e:
        info.download(FakeModule(FakeSession(FakeResponse(403, []))), "https://dl.example.test/p.zip?sig=SECRET",
                      str(dest))
    assert "HTTP 403" in str(e.value) and "SECRET" not in str(e.value)
    assert os.listdir(tmp_path) == []
    with pytest.raises(MDEError) as e:
        info.download(FakeModule(FakeSession(FakeResponse(200, [b"x", IOError("https://dl.example.test/p.zip?sig=SECRET")]))),
                      "https://dl.example.test/p.zip?sig=SECRET", str(dest))
    assert "SECRET" not in str(e.value)
    assert os.listdir(tmp_path) == []


def test_download_refuses_plain_http(tmp_path):
    session = FakeSession(FakeResponse(200, [b"x"]))
    with pytest.raises(MDEError, match="not an https"):
        info.download(FakeModule(session), "http://dl.example.test/p.zip?sig=SECRET", str(tmp_path / "p.zip"))
    assert session.calls == []
