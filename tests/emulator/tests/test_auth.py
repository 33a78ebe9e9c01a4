"""Token endpoint and API authentication."""

import jwt
import requests

from .conftest import SCOPE, get_token, msal_app


def _claims(token):
    return jwt.decode(token, options={"verify_signature": False})


def test_secret_token_claims(emulator):
    token = get_token(emulator, "full")
    claims = _claims(token)
    assert claims["aud"] == "https://api.securitycenter.microsoft.com"
    assert claims["tid"] == emulator.tenant_id
    assert claims["appid"] == emulator.apps["full"]["client_id"]
    assert "Machine.Isolate" in claims["roles"] and "Ti.ReadWrite.All" in claims["roles"]
    assert claims["exp"] - claims["iat"] == 3600
    assert emulator.counters["token_requests"] == 1


def test_windowsatpservice_scope_and_readonly_roles(emulator):
    token = get_token(emulator, "readonly", "https://securitycenter.onmicrosoft.com/windowsatpservice/.default")
    claims = _claims(token)
    assert claims["aud"] == "https://securitycenter.onmicrosoft.com/windowsatpservice"
    assert sorted(claims["roles"]) == ["Alert.Read.All", "Machine.Read.All"]


def test_certificate_tokens(emulator):
    for name in ("cert", "cert_encrypted"):
        claims = _claims(get_token(emulator, name))
        assert claims["appid"] == emulator.apps[name]["client_id"]
    entry = [e for e in emulator.log if e["family"] == "token"][-1]
    assert entry["body"]["client_assertion"] == "REDACTED"
    assert entry["status"] == 200


def test_certificate_with_sha1_thumbprint(emulator):
    from cryptography import x509  # pylint: disable=import-outside-toplevel
    from cryptography.hazmat.primitives import hashes  # pylint: disable=import-outside-toplevel
    app = emulator.apps["cert"]
    with open(app["cert_path"], encoding="ascii") as handle:
        pem = handle.read()
    thumb = x509.load_pem_x509_certificate(pem.encode()).fingerprint(hashes.SHA1()).hex()
    result = msal_app(emulator, "cert", {"private_key": pem, "thumbprint": thumb}).acquire_token_for_client([SCOPE])
    assert "access_token" in result, result


def test_wrong_secret(emulator):
    result = msal_app(emulator, "full", "not-the-secret").acquire_token_for_client([SCOPE])
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [7000215]
    assert result["error_description"].startswith("AADSTS7000215: Invalid client secret provided.")
    for key in ("timestamp", "trace_id", "correlation_id", "error_uri"):
        assert key in result
    assert emulator.log[-1]["status"] == 401
    assert emulator.log[-1]["body"]["client_secret"] == "REDACTED"


def test_wrong_certificate_is_bad_assertion(emulator):
    other = emulator.apps["cert_encrypted"]
    with open(other["cert_path"], encoding="ascii") as handle:
        pem = handle.read()
    cred = {"private_key": pem, "public_certificate": pem, "passphrase": other["cert_password"]}
    result = msal_app(emulator, "cert", cred).acquire_token_for_client([SCOPE])
    assert result["error"] == "invalid_client" and result["error_codes"] == [700027]


def _post_token(emulator, tenant, **form):
    return requests.post("%s/%s/oauth2/v2.0/token" % (emulator.url, tenant), data=form, verify=emulator.ca_path, timeout=10)


def test_unknown_app_tenant_scope(emulator):
    full = emulator.apps["full"]
    resp = _post_token(emulator, emulator.tenant_id, grant_type="client_credentials", client_id="00000000-0000-0000-0000-000000000001",
                       client_secret="x", scope=SCOPE)
    assert resp.status_code == 400 and resp.json()["error"] == "unauthorized_client" and resp.json()["error_codes"] == [700016]
    resp = _post_token(emulator, "11111111-2222-3333-4444-555555555555", grant_type="client_credentials", client_id=full["client_id"],
                       client_secret=full["client_secret"], scope=SCOPE)
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_request" and resp.json()["error_codes"] == [90002]
    resp = _post_token(emulator, emulator.tenant_id, grant_type="client_credentials", client_id=full["client_id"],
                       client_secret=full["client_secret"], scope="https://api.securitycenter.microsoft.com/Machine.Read.All")
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_scope" and resp.json()["error_codes"] == [1002012]
    resp = _post_token(emulator, emulator.tenant_id, grant_type="client_credentials", client_id=full["client_id"],
                       client_secret=full["client_secret"], scope="https://management.azure.com/.default")
    assert resp.status_code == 400 and resp.json()["error_codes"] == [500011]
    result = msal_app(emulator, "full").acquire_token_for_client(["https://management.azure.com/.default"])
    assert result["error_codes"] == [500011]
    # Microsoft Graph is a known resource: its token carries the Graph audience.
    result = msal_app(emulator, "full").acquire_token_for_client(["https://graph.microsoft.com/.default"])
    assert "access_token" in result


def test_api_401_and_expire(emulator, api):
    resp = requests.get(emulator.url + "/api/machines", verify=emulator.ca_path, timeout=10)
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "Unauthorized"
    assert api.get("/api/machines").status_code == 200
    emulator.expire_tokens()
    resp = api.get("/api/machines")
    assert resp.status_code == 401 and "expired" in resp.json()["error"]["message"]
    assert set(resp.json()["error"]) == {"code", "message", "target"}


def test_403_missing_role(emulator, api_for):
    resp = api_for("noperm").get("/api/machines")
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "Forbidden"
    resp = api_for("readonly").post("/api/machines/%s/isolate" % emulator.machines[0]["id"], json={"Comment": "x", "IsolationType": "Full"})
    assert resp.status_code == 403 and "Machine.Isolate" in resp.json()["error"]["message"]
    assert emulator.writes()[-1]["status"] == 403


def test_429_with_retry_after(tmp_path, monkeypatch):
    from tests.emulator import Emulator  # pylint: disable=import-outside-toplevel
    from .conftest import Api  # pylint: disable=import-outside-toplevel
    emu = Emulator(state_dir=tmp_path, machines=5, rate_limit_scale=0.02)
    emu.start()
    try:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", emu.ca_path)
        client = Api(emu, emu.token_for("full"))
        statuses = [client.get("/api/machineactions/%s/getPackageUri" % "6b9a5f0e-0000-4000-8000-000000000000").status_code for _i in range(3)]
        assert statuses[:2] == [404, 404] and statuses[2] == 429
        resp = client.get("/api/machineactions/6b9a5f0e-0000-4000-8000-000000000000/getPackageUri")
        assert resp.status_code == 429 and 1 <= int(resp.headers["Retry-After"]) <= 2  # 60 s * 0.02 = 1.2 s window
        assert resp.json()["error"]["code"] == "TooManyRequests"
        assert client.get("/api/machines").status_code == 200  # other endpoint, other window
        import time  # pylint: disable=import-outside-toplevel
        time.sleep(int(resp.headers["Retry-After"]))
        assert client.get("/api/machineactions/6b9a5f0e-0000-4000-8000-000000000000/getPackageUri").status_code == 404
    finally:
        emu.stop()


def test_openid_configuration(emulator):
    resp = requests.get("%s/%s/v2.0/.well-known/openid-configuration" % (emulator.url, emulator.tenant_id), verify=emulator.ca_path, timeout=10)
    conf = resp.json()
    assert conf["token_endpoint"] == "%s/%s/oauth2/v2.0/token" % (emulator.url, emulator.tenant_id)
    assert requests.get(conf["jwks_uri"], verify=emulator.ca_path, timeout=10).json()["keys"]
