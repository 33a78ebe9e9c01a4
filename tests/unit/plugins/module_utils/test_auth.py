"""Token providers and the cross-process token cache; option validation in create_client."""
import errno
import json
import multiprocessing
import os
import stat
import time

import pytest

from ansible_collections.defender.endpoint.plugins.module_utils import auth
from ansible_collections.defender.endpoint.plugins.module_utils.auth import MsalTokenProvider, StaticTokenProvider
from ansible_collections.defender.endpoint.plugins.module_utils.client import PinnedSession
from ansible_collections.defender.endpoint.plugins.module_utils.connect import create_client
from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEAuthError, MDEConfigError

from tests.unit.helpers import owned_by_another


class CountingProvider(MsalTokenProvider):
    """MsalTokenProvider whose Entra ID call is replaced by a slow counter (one line a fetch in a file)."""

    def __init__(self, cache_dir, counter, lifetime=3600, **kw):
        super().__init__("tenant", "client", "https://login.example.test", "scope/.default", None,
                         client_secret="s3cr3t", cache_dir=cache_dir, **kw)
        self.counter = counter
        self.lifetime = lifetime

    def _fetch(self):
        time.sleep(0.2)
        with open(self.counter, "a") as f:
            f.write("x\n")
        n = sum(1 for _line in open(self.counter))
        return "token-%d" % n, time.time() + self.lifetime


def _fork_get(cache_dir, counter, queue):
    queue.put(CountingProvider(cache_dir, counter).get_token())


def fetches(counter):
    return sum(1 for _line in open(counter)) if os.path.exists(counter) else 0


def test_parallel_processes_share_one_token(tmp_path):
    cache, counter = str(tmp_path / "cache"), str(tmp_path / "count")
    queue = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_fork_get, args=(cache, counter, queue)) for _i in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    tokens = {queue.get(timeout=5) for _proc in procs}
    assert fetches(counter) == 1
    assert tokens == {"token-1"}


def test_cache_directory_and_file_are_private(tmp_path):
    cache = tmp_path / "cache"
    CountingProvider(str(cache), str(tmp_path / "count")).get_token()
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(cache / "tokens.json").st_mode) == 0o600
    content = (cache / "tokens.json").read_text()
    assert "token-1" in content and "s3cr3t" not in content


def test_cache_is_refused_when_others_can_read_it(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    CountingProvider(str(cache), str(tmp_path / "count")).get_token()
    os.chmod(cache / "tokens.json", 0o644)
    with pytest.raises(MDEAuthError) as e:
        CountingProvider(str(cache), str(tmp_path / "count")).get_token()
    assert "chmod 600" in str(e.value) and "token_cache: false" in str(e.value)
    os.chmod(cache / "tokens.json", 0o600)
    os.chmod(cache, 0o775)  # others could have put a file of theirs in it: not tightened, refused
    with pytest.raises(MDEAuthError) as e:
        CountingProvider(str(cache), str(tmp_path / "count")).get_token()
    assert "chmod 700" in str(e.value) and "token_cache: false" in str(e.value)
    os.chmod(cache, 0o755)
    (cache / "notes.txt").write_text("the user's own file")  # not only the collection's: not tightened, refused
    with pytest.raises(MDEAuthError) as e:
        CountingProvider(str(cache), str(tmp_path / "count")).get_token()
    assert "chmod 700" in str(e.value) and stat.S_IMODE(os.stat(cache).st_mode) == 0o755
    os.chmod(cache, 0o700)
    owned_by_another(monkeypatch, cache / "tokens.json")
    with pytest.raises(MDEAuthError) as e:
        CountingProvider(str(cache), str(tmp_path / "count")).get_token()
    assert "owned by uid 4242" in str(e.value)


def test_a_directory_opened_by_ansible_is_tightened(tmp_path):
    """Ansible's jsonfile cache plugin makes ~/.cache/defender.endpoint/inventory with its default mode (0755):
    the token cache closes the collection's directory again instead of refusing it until someone runs chmod."""
    cache = tmp_path / "cache"
    os.makedirs(str(cache / "inventory"))
    os.chmod(str(cache), 0o755)
    p = CountingProvider(str(cache), str(tmp_path / "count"))
    assert p.get_token() == "token-1"
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o700
    assert [w for w in p.warnings if str(cache) in w and "0755" in w and "0700" in w]
    os.chmod(str(cache), 0o755)  # the other files of the collection do not stop it either
    assert CountingProvider(str(cache), str(tmp_path / "count")).get_token() == "token-1"
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o700


def test_prepare_cache_dir_makes_it_private_before_ansible_does(tmp_path, monkeypatch):
    monkeypatch.delenv("MDE_TOKEN_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    old = os.umask(0o022)
    try:
        warnings = []
        assert auth.prepare_cache_dir(warnings=warnings) is True
        os.makedirs(str(tmp_path / "xdg" / "defender.endpoint" / "inventory"), exist_ok=True)  # what Ansible does
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(str(tmp_path / "xdg" / "defender.endpoint")).st_mode) == 0o700
    assert warnings == []
    os.chmod(str(tmp_path / "xdg" / "defender.endpoint"), 0o777)
    assert auth.prepare_cache_dir(warnings=warnings) is False
    assert "defender.endpoint" in warnings[0] and "chmod 700" in warnings[0]


def test_a_symlink_is_refused_as_a_symlink(tmp_path):
    cache = tmp_path / "cache"
    CountingProvider(str(cache), str(tmp_path / "count")).get_token()
    elsewhere = tmp_path / "passwd"
    elsewhere.write_text("root:x:0:0:root:/root:/bin/bash\n")
    os.chmod(str(elsewhere), 0o644)
    os.unlink(str(cache / "tokens.json"))
    os.symlink(str(elsewhere), str(cache / "tokens.json"))
    with pytest.raises(MDEAuthError) as e:
        CountingProvider(str(cache), str(tmp_path / "count")).get_token()
    assert "symbolic link" in str(e.value) and str(cache / "tokens.json") in str(e.value)
    assert "chmod" not in str(e.value)
    assert elsewhere.read_text().startswith("root:x:0:0") and os.path.islink(str(cache / "tokens.json"))


@pytest.mark.parametrize("content", [
    '{"k": "junk", "other": {"access_token": 5, "expires_on": "soon"}, "x": null}',
    '["not", "a", "mapping"]',
    '{"half": {"access_token": "t", "exp',
])
def test_damaged_entries_are_dropped(tmp_path, content):
    cache = tmp_path / "cache"
    os.makedirs(str(cache), 0o700)
    (cache / "tokens.json").write_text(content)
    os.chmod(str(cache / "tokens.json"), 0o600)
    p = CountingProvider(str(cache), str(tmp_path / "count"))
    assert p.get_token() == "token-1"
    assert [w for w in p.warnings if str(cache / "tokens.json") in w]
    data = json.loads((cache / "tokens.json").read_text())
    assert list(data) == [p._key] and data[p._key]["access_token"] == "token-1"
    q = CountingProvider(str(cache), str(tmp_path / "count"))
    assert q.get_token() == "token-1" and q.warnings == []


def test_a_directory_in_place_of_the_cache_file_falls_back_to_memory(tmp_path):
    cache = tmp_path / "cache"
    os.makedirs(str(cache), 0o700)
    os.mkdir(str(cache / "tokens.json"))
    p = CountingProvider(str(cache), str(tmp_path / "count"))
    assert p.get_token() == "token-1"
    assert p.get_token(force_refresh=True) == "token-2"
    assert len(p.warnings) == 1 and str(cache / "tokens.json") in p.warnings[0] and "memory" in p.warnings[0]


def _read_only(monkeypatch, under):
    """A read-only file system under ``under``: creating or writing anything there fails with EROFS."""
    real_open, real_makedirs = os.open, os.makedirs

    def fake_open(path, flags, *args, **kwargs):
        if str(path).startswith(under) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
        return real_open(path, flags, *args, **kwargs)

    def fake_makedirs(path, *args, **kwargs):
        if str(path).startswith(under) and not os.path.isdir(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
        return real_makedirs(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(os, "makedirs", fake_makedirs)


@pytest.mark.parametrize("exists", [False, True])
def test_a_read_only_home_falls_back_to_memory(tmp_path, monkeypatch, exists):
    cache = tmp_path / "home" / ".cache" / "defender.endpoint"
    if exists:
        os.makedirs(str(cache), 0o700)
    _read_only(monkeypatch, str(tmp_path / "home"))
    p = CountingProvider(str(cache), str(tmp_path / "count"))
    assert p.get_token() == p.get_token() == "token-1"
    assert len(p.warnings) == 1 and str(cache) in p.warnings[0] and "memory" in p.warnings[0]
    assert "ead-only" in p.warnings[0]


def test_expiring_token_is_replaced(tmp_path):
    cache, counter = str(tmp_path / "cache"), str(tmp_path / "count")
    assert CountingProvider(cache, counter, lifetime=100).get_token() == "token-1"  # < EXPIRY_MARGIN left
    assert CountingProvider(cache, counter).get_token() == "token-2"
    assert CountingProvider(cache, counter).get_token() == "token-2"
    assert fetches(counter) == 2


def test_force_refresh_replaces_a_rejected_token_once(tmp_path):
    cache, counter = str(tmp_path / "cache"), str(tmp_path / "count")
    a, b = CountingProvider(cache, counter), CountingProvider(cache, counter)
    assert a.get_token() == b.get_token() == "token-1"
    assert a.get_token(force_refresh=True) == "token-2"
    # b was rejected with the same old token: it picks up a's fresh one instead of fetching again.
    assert b.get_token(force_refresh=True) == "token-2"
    assert fetches(counter) == 2


def test_token_cache_off_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("MDE_TOKEN_CACHE_DIR", str(tmp_path / "cache"))
    p = CountingProvider(None, str(tmp_path / "count"))
    assert p.get_token() == p.get_token() == "token-1"
    assert not (tmp_path / "cache").exists()


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("MDE_TOKEN_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert auth.default_cache_dir() == str(tmp_path / "defender.endpoint")
    monkeypatch.setenv("MDE_TOKEN_CACHE_DIR", "/x/y")
    assert auth.default_cache_dir() == "/x/y"


def test_static_token_is_used_as_is():
    p = StaticTokenProvider("ready")
    assert p.get_token() == "ready" and not p.refreshable


def _pem(tmp_path, password=None):
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "app")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    enc = serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption()
    path = tmp_path / "app.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc))
    return str(path)


def test_certificate_credential(tmp_path):
    cred = auth._load_certificate(_pem(tmp_path, "pw"), "pw")
    assert "BEGIN CERTIFICATE" in cred["public_certificate"] and "BEGIN PRIVATE KEY" in cred["private_key"]


@pytest.mark.parametrize("password,given,expected", [
    ("pw", None, "is encrypted: set client_certificate_password"),
    ("pw", "wrong", "client_certificate_password does not decrypt"),
    (None, "pw", "is not encrypted"),
])
def test_certificate_password_errors(tmp_path, password, given, expected):
    with pytest.raises(MDEConfigError) as e:
        auth._load_certificate(_pem(tmp_path, password), given)
    assert expected in str(e.value)
    assert "wrong" not in str(e.value)


def test_certificate_unreadable(tmp_path):
    with pytest.raises(MDEConfigError) as e:
        auth._load_certificate(str(tmp_path / "missing.pem"), None)
    assert "client_certificate_path" in str(e.value) and "cannot be read" in str(e.value)
    (tmp_path / "junk.pem").write_text("junk")
    with pytest.raises(MDEConfigError) as e:
        auth._load_certificate(str(tmp_path / "junk.pem"), None)
    assert "no PEM certificate" in str(e.value)


BASE = dict(tenant_id="contoso.onmicrosoft.com", client_id="cid")


@pytest.mark.parametrize("opts,expected", [
    (dict(BASE), "No credential given"),
    (dict(BASE, client_secret="s", access_token="t"), "Only one credential may be set, got client_secret and access_token"),
    (dict(BASE, client_secret="s", client_certificate_path="/p"), "got client_secret and client_certificate_path"),
    (dict(client_id="cid", client_secret="s"), "tenant_id is required"),
    (dict(tenant_id="t", client_secret="s"), "client_id is required"),
    (dict(BASE, client_secret="s", cloud="mars"), "cloud must be one of dod, gcc, gcc_high, global"),
    (dict(BASE, client_secret="s", api_url="http://127.0.0.1:8080"), "api_url must be an https:// URL"),
    (dict(BASE, client_secret="s", timeout=0), "timeout must be greater than 0"),
    (dict(BASE, client_secret="s", ca_path="/nonexistent/ca.pem"), "ca_path /nonexistent/ca.pem is not a readable file"),
    (dict(tenant_id="bad tenant/../x", client_id="c", client_secret="s"), "tenant_id must be"),
    (dict(BASE, client_certificate_password="pw", client_secret="s"), "client_certificate_password needs"),
])
def test_create_client_rejects_bad_options_before_any_call(opts, expected):
    with pytest.raises(MDEConfigError) as e:
        create_client(**opts)
    assert expected in str(e.value)
    assert "s3cr3t" not in str(e.value)


def test_create_client_resolves_cloud_defaults():
    c = create_client(access_token="t", cloud="gcc_high")
    assert c.api_url == "https://api-gov.securitycenter.microsoft.us"
    c = create_client(client_secret="s", cloud="global", token_cache=False, **BASE)
    assert c.api_url == "https://api.security.microsoft.com"
    assert c.token_provider.scope == "https://api.securitycenter.microsoft.com/.default"
    assert c.token_provider.authority == "https://login.microsoftonline.com/contoso.onmicrosoft.com"
    c = create_client(client_secret="s", cloud="dod", api_url="https://api.example.test/", token_cache=False, **BASE)
    assert c.api_url == "https://api.example.test"
    assert c.token_provider.scope == "https://securitycenter.onmicrosoft.us/windowsatpservice/.default"


def test_explicit_ca_path_wins_over_requests_ca_bundle(tmp_path, monkeypatch):
    """requests lets REQUESTS_CA_BUNDLE override Session.verify; the pinned session passes verify every time."""
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    seen = {}

    def fake_send(self, request, **kwargs):
        seen["verify"] = kwargs.get("verify")
        raise RuntimeError("stop")

    monkeypatch.setattr("requests.Session.send", fake_send)
    for verify, expected in ((str(ca), str(ca)), (False, False), (True, "/etc/ssl/certs/ca-certificates.crt")):
        with pytest.raises(RuntimeError):
            PinnedSession(verify=verify).get("https://127.0.0.1:1/x")
        assert seen["verify"] == expected


def test_a_failed_fetch_leaves_the_cache_as_it_was_and_the_next_task_fetches(tmp_path):
    cache = str(tmp_path / "cache")
    first = CountingProvider(cache, str(tmp_path / "count"))
    assert first.get_token() == "token-1"
    second = CountingProvider(cache, str(tmp_path / "count"))
    second._key = "another scope"

    def unreachable():
        raise MDEAuthError("Could not reach the Entra ID token endpoint")
    second._fetch = unreachable
    with pytest.raises(MDEAuthError):
        second.get_token()
    data = json.loads(open(os.path.join(cache, "tokens.json")).read())
    assert list(data) == [first._key] and second.warnings == []
