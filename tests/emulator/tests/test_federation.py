"""Workload identity federation: the emulator's OIDC issuer and federated client assertions, through real MSAL."""

import jwt
import msal
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from .conftest import SCOPE, Api, get_token

SUBJECT = "system:serviceaccount:awx:automation-job"


def _claims(token):
    return jwt.decode(token, options={"verify_signature": False})


def federated_app(emu, assertion, name="workload"):
    session = requests.Session()
    session.verify = emu.ca_path
    return msal.ConfidentialClientApplication(emu.apps[name]["client_id"], client_credential={"client_assertion": lambda: assertion},
                                              authority="%s/%s" % (emu.url, emu.tenant_id), validate_authority=False,
                                              instance_discovery=False, http_client=session)


def minted(emu, **body):
    resp = requests.post(emu.url + "/_emulator/federated_token", json=body, verify=emu.ca_path, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()["token"]


def test_issuer_discovery_and_keys(emulator):
    issuer = emulator.config()["oidc_issuer"]
    assert issuer == emulator.url + "/oidc-issuer"
    conf = requests.get(issuer + "/.well-known/openid-configuration", verify=emulator.ca_path, timeout=10).json()
    assert conf["issuer"] == issuer
    keys = requests.get(conf["jwks_uri"], verify=emulator.ca_path, timeout=10).json()["keys"]
    entra = requests.get("%s/%s/discovery/v2.0/keys" % (emulator.url, emulator.tenant_id), verify=emulator.ca_path, timeout=10).json()["keys"]
    assert keys[0]["kid"] not in {k["kid"] for k in entra}
    token = minted(emulator, subject=SUBJECT)
    key = jwt.PyJWK(keys[0]).key
    claims = jwt.decode(token, key, algorithms=["RS256"], audience="api://AzureADTokenExchange")
    assert (claims["iss"], claims["sub"]) == (issuer, SUBJECT) and claims["exp"] - claims["iat"] == 3600
    assert emulator.apps["workload"]["federated"] == [{"issuer": issuer, "subject": SUBJECT, "audiences": ["api://AzureADTokenExchange"]}]


def test_federated_assertion_gets_app_token(emulator):
    result = federated_app(emulator, minted(emulator, subject=SUBJECT)).acquire_token_for_client([SCOPE])
    assert "access_token" in result, result
    claims = _claims(result["access_token"])
    assert claims["appid"] == emulator.apps["workload"]["client_id"] and "Machine.Isolate" in claims["roles"]
    entry = [e for e in emulator.log if e["family"] == "token"][-1]
    assert entry["body"]["client_assertion"] == "REDACTED" and entry["status"] == 200
    assert Api(emulator, result["access_token"]).get("/api/machines?$top=1").status_code == 200
    graph = federated_app(emulator, minted(emulator)).acquire_token_for_client(["https://graph.microsoft.com/.default"])
    assert _claims(graph["access_token"])["aud"] == "https://graph.microsoft.com"
    get_token(emulator, "cert")  # the certificate assertion path is untouched


def _refused(emulator, token, name="workload"):
    result = federated_app(emulator, token, name).acquire_token_for_client([SCOPE])
    assert "access_token" not in result, result
    return result


def test_federated_assertion_errors(emulator):
    result = _refused(emulator, minted(emulator, subject=SUBJECT, issuer="https://token.actions.githubusercontent.com"))
    assert result["error"] == "invalid_client" and result["error_codes"] == [700211]
    assert "presented assertion issuer 'https://token.actions.githubusercontent.com'" in result["error_description"]
    result = _refused(emulator, minted(emulator, subject="system:serviceaccount:awx:someone-else"))
    assert result["error_codes"] == [700213] and "subject 'system:serviceaccount:awx:someone-else'" in result["error_description"]
    result = _refused(emulator, minted(emulator, subject=SUBJECT, audience="api://SomethingElse"))
    assert result["error_codes"] == [700212] and "audience 'api://SomethingElse'" in result["error_description"]
    result = _refused(emulator, minted(emulator, subject=SUBJECT, lifetime=-600))
    assert result["error_codes"] == [700024] and "not within its valid time range" in result["error_description"]
    result = _refused(emulator, minted(emulator, subject=SUBJECT), name="full")  # an app without federated credentials
    assert result["error_codes"] == [700211]
    # a token of the right issuer but signed with another key
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(_claims(minted(emulator, subject=SUBJECT)), other, algorithm="RS256", headers={"kid": "other"})
    result = _refused(emulator, forged)
    assert result["error_codes"] == [700027]
