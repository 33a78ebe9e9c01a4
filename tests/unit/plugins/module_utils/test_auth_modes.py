"""Sign-in modes (auth_mode): which mode the options imply, what each needs, checked before any call; the delegated
permission names a 403 gives in user context; the federated token file."""
import pytest

from ansible_collections.defender.endpoint.plugins.module_utils import auth
from ansible_collections.defender.endpoint.plugins.module_utils.connect import create_client, resolve_auth_mode
from ansible_collections.defender.endpoint.plugins.module_utils.permissions import (
    delegated_permission,
    required_permission,
)
from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEConfigError

BASE = dict(tenant_id="contoso.onmicrosoft.com", client_id="cid", token_cache=False)
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"


@pytest.mark.parametrize("given,mode", [
    (dict(client_secret="s"), "client_secret"),
    (dict(client_certificate_path="/p.pem"), "client_certificate"),
    (dict(access_token="t"), "access_token"),
    (dict(federated_token_file="/t"), "workload_identity"),
    # A secret wins over a federated token file set in the environment: nothing existing changes.
    (dict(client_secret="s", federated_token_file="/t"), "client_secret"),
    (dict(auth_mode="device_code", client_secret="s"), "device_code"),
])
def test_the_mode_follows_auth_mode_or_the_credential_given(given, mode):
    assert resolve_auth_mode(**given) == mode


@pytest.mark.parametrize("opts,expected", [
    (dict(BASE, auth_mode="workload_identity"),
     "auth_mode workload_identity needs federated_token_file (or MDE_FEDERATED_TOKEN_FILE or AZURE_FEDERATED_TOKEN_FILE)"),
    (dict(BASE, auth_mode="client_secret"), "auth_mode client_secret needs client_secret"),
    (dict(client_id="cid", auth_mode="device_code"), "tenant_id is required with auth_mode device_code"),
    (dict(tenant_id="t", auth_mode="device_code"), "client_id is required with auth_mode device_code"),
    (dict(BASE, auth_mode="password"), "auth_mode must be one of"),
    (dict(tenant_id="contoso.onmicrosoft.com"), "or auth_mode (device_code, managed_identity, workload_identity)"),
])
def test_a_mode_missing_what_it_needs_fails_before_any_call(opts, expected):
    with pytest.raises(MDEConfigError) as e:
        create_client(**opts)
    assert expected in str(e.value)


def test_each_mode_builds_its_provider():
    c = create_client(auth_mode="device_code", **BASE)
    assert c.token_provider.delegated and c.graph.token_provider.delegated
    # One sign-in serves both APIs.
    assert c.token_provider.sign_in is c.graph.token_provider.sign_in
    c = create_client(auth_mode="managed_identity", token_cache=False)
    assert c.token_provider.resource == "https://api.securitycenter.microsoft.com"
    assert "system-assigned" in c.token_provider.describe()
    c = create_client(auth_mode="managed_identity", client_id="mi-client", token_cache=False)
    assert "user-assigned managed identity mi-client" in c.token_provider.describe()
    assert c.graph.token_provider.resource == "https://graph.microsoft.com"
    c = create_client(federated_token_file="/run/token", **BASE)
    assert "workload identity" in c.token_provider.describe() and not c.token_provider.delegated


def test_managed_identity_names_the_endpoint_msal_will_use(monkeypatch):
    for var in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT",
                "AZURE_POD_IDENTITY_AUTHORITY_HOST"):
        monkeypatch.delenv(var, raising=False)
    assert "169.254.169.254" in auth.managed_identity_source()
    monkeypatch.setenv("IDENTITY_ENDPOINT", "https://127.0.0.1:1/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", "h")
    assert "App Service" in auth.managed_identity_source()


@pytest.mark.parametrize("method,path,expected", [
    ("GET", "/api/machines", "Machine.Read or Machine.ReadWrite"),
    ("POST", "/api/machines/abc/isolate", "Machine.Isolate"),
    ("GET", "/api/machineactions/1/getPackageUri", "Machine.CollectForensics"),
    ("GET", "/api/machineactions/1/GetLiveResponseResultDownloadLink(index=0)", "Machine.LiveResponse"),
    ("POST", "/api/indicators", "Ti.ReadWrite"),
    ("GET", "/api/files/abc", "File.Read.All"),
    ("PATCH", "/api/alerts/da1", "Alert.ReadWrite"),
    ("POST", "/v1.0/security/runHuntingQuery", "ThreatHunting.Read.All"),
])
def test_user_context_names_the_delegated_permission(method, path, expected):
    assert required_permission(method, path, delegated=True) == expected


def test_application_names_stay_for_application_context():
    assert required_permission("GET", "/api/machines") == "Machine.Read.All or Machine.ReadWrite.All"
    assert delegated_permission("Vulnerability.Read.All") == "Vulnerability.Read"


def test_federated_token_file(tmp_path):
    path = tmp_path / "token"
    path.write_text(JWT + "\n")
    link = tmp_path / "link"
    link.symlink_to(path)  # Kubernetes projects the token through a symbolic link
    assert auth.read_federated_token(str(link)) == JWT
    path.write_text("")
    with pytest.raises(MDEConfigError, match="does not hold a token"):
        auth.read_federated_token(str(path))
    with pytest.raises(MDEConfigError, match="cannot be read"):
        auth.read_federated_token(str(tmp_path / "missing"))


def test_module_mode_builds_a_sign_in_that_cannot_show_a_code():
    """Module mode (MDEModule.main) builds its Context without sign_in: the client gets no way to show a code."""
    from ansible_collections.defender.endpoint.plugins.module_utils import options
    from ansible_collections.defender.endpoint.plugins.module_utils.context import Context
    params = dict((name, spec.get("default")) for name, spec in options.SHARED_OPTIONS.items())
    params.update(auth_mode="device_code", tenant_id="contoso.onmicrosoft.com", client_id="cid")
    assert Context(params).client.token_provider.sign_in.show is None
    shown = []
    assert Context(params, sign_in=shown.append).client.token_provider.sign_in.show == shown.append


def test_device_code_in_module_mode_fails_with_advice(monkeypatch):
    """Where nothing can show the sign-in message, a sign-in that is needed fails and says where to sign in."""
    class NoAccounts:
        def get_accounts(self):
            return []
    sign_in = auth.UserSignIn("contoso.onmicrosoft.com", "cid", "https://login.example.test", None, show=None)
    with pytest.raises(auth.MDEAuthError) as e:
        sign_in._sign_in(NoAccounts(), "scope/.default", None)  # pylint: disable=protected-access
    assert "Run a task of this collection with ansible-playbook on the controller" in str(e.value)


def test_the_sign_in_prompt_is_built_from_the_uri_and_code_never_from_the_authority_text():
    from ansible_collections.defender.endpoint.plugins.module_utils.auth import sign_in_prompt
    flow = {"verification_uri": "https://microsoft.com/devicelogin", "user_code": "ABCD12345",
            "message": "\x1b[2J\x1b[Hfatal: [localhost]: FAILED! open http://evil.example and enter your password"}
    prompt = sign_in_prompt(flow)
    assert prompt == ("To sign in, use a web browser to open the page https://microsoft.com/devicelogin and enter the "
                      "code ABCD12345 to authenticate.")


@pytest.mark.parametrize("uri,code", [
    ("http://microsoft.com/devicelogin", "ABCD12345"), ("https://x.example/\x1b[2J", "ABCD12345"),
    ("https://user@x.example/", "ABCD12345"), ("javascript:alert(1)", "ABCD12345"), (None, "ABCD12345"),
    ("https://microsoft.com/devicelogin", "AB\x1bCD"), ("https://microsoft.com/devicelogin", "fatal: x"),
    ("https://microsoft.com/devicelogin", None),
])
def test_a_sign_in_prompt_with_a_hostile_uri_or_code_is_refused(uri, code):
    from ansible_collections.defender.endpoint.plugins.module_utils.auth import sign_in_prompt
    from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEAuthError
    with pytest.raises(MDEAuthError) as e:
        sign_in_prompt({"verification_uri": uri, "user_code": code})
    assert "\x1b" not in str(e.value) and "no sign-in was started" in str(e.value)
