"""Fixtures for the emulator's own tests."""

import msal
import pytest
import requests

from tests.emulator import fixtures

# re-export the shared fixtures (pytest_plugins is only allowed in the rootdir conftest)
emulator_session = fixtures.emulator_session
emulator = fixtures.emulator

SCOPE = "https://api.securitycenter.microsoft.com/.default"


@pytest.fixture(autouse=True)
def _ca_bundle(emulator_session, monkeypatch):  # pylint: disable=redefined-outer-name
    # requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE override Session.verify, so point them at the emulator CA.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", emulator_session.ca_path)
    monkeypatch.setenv("CURL_CA_BUNDLE", emulator_session.ca_path)


def msal_app(emu, name="full", credential=None):
    app = emu.apps[name]
    if credential is None:
        if app["client_secret"]:
            credential = app["client_secret"]
        else:
            with open(app["cert_path"], encoding="ascii") as handle:
                pem = handle.read()
            credential = {"private_key": pem, "public_certificate": pem}
            if app["cert_password"]:
                credential["passphrase"] = app["cert_password"]
    return msal.ConfidentialClientApplication(app["client_id"], client_credential=credential, authority="%s/%s" % (emu.url, emu.tenant_id),
                                              instance_discovery=False, validate_authority=False, verify=emu.ca_path)


def get_token(emu, name="full", scope=SCOPE):
    result = msal_app(emu, name).acquire_token_for_client([scope])
    assert "access_token" in result, result
    return result["access_token"]


class Api:
    """Tiny requests wrapper for the tests."""

    def __init__(self, emu, token):
        self.emu = emu
        self.session = requests.Session()
        self.session.verify = emu.ca_path
        self.session.headers["Authorization"] = "Bearer %s" % token

    def __getattr__(self, method):
        def call(path, **kwargs):
            return self.session.request(method.upper(), self.emu.url + path, timeout=30, **kwargs)
        return call


@pytest.fixture
def api(emulator):  # pylint: disable=redefined-outer-name
    """Api client with the "full" app (token minted through msal)."""
    return Api(emulator, get_token(emulator, "full"))


@pytest.fixture
def api_for(emulator):  # pylint: disable=redefined-outer-name
    def make(name):
        return Api(emulator, get_token(emulator, name))
    return make
