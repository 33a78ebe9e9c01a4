"""HTTP side of the sign-in modes other than client credentials: the device authorization endpoint and its verification
page (``/devicelogin``), the managed identity token endpoints (IMDS and App Service), the emulator's OIDC issuer, and
their ``/_emulator`` admin endpoints. The logic is in auth_user.py and auth_identity.py."""

import html
import json
import re

from starlette.responses import Response

from .auth import AadError
from .auth_identity import MiError

DEVICECODE = re.compile(r"^/(?P<tenant>[^/]+)/oauth2/v2\.0/devicecode/?$")
DEVICELOGIN = re.compile(r"^/devicelogin/?$", re.I)
IMDS = re.compile(r"^/metadata/identity/oauth2/token/?$")
APP_SERVICE = re.compile(r"^/msi/token/?$", re.I)  # the App Service page's examples write both /msi/token and /MSI/token
OIDC_ISSUER = re.compile(r"^/oidc-issuer/(?P<what>\.well-known/openid-configuration|openid/v1/jwks)/?$")
JSON = "application/json; charset=utf-8"


def family(path):
    """The request log family of a path this module serves, else None."""
    if DEVICECODE.match(path):
        return "token"
    if DEVICELOGIN.match(path):
        return "devicelogin"
    if IMDS.match(path) or APP_SERVICE.match(path):
        return "managed_identity"
    if OIDC_ISSUER.match(path):
        return "discovery"
    return None


def _json(obj, status=200, headers=None):
    return Response(json.dumps(obj), status_code=status, headers=dict(headers or {}, **{"content-type": JSON}))


def dispatch(emu, method, path, query, body, headers, entry):
    """Answer a request for one of this module's paths, or return None."""
    found = DEVICECODE.match(path)
    if found:
        if method != "POST":
            return Response(status_code=405, headers={"Allow": "POST"})
        try:
            return _json(emu.user_auth.start_device_flow(found.group("tenant"), body if isinstance(body, dict) else {}, emu.url),
                         headers={"Cache-Control": "no-store, no-cache"})
        except AadError as err:
            return _json(err.body(emu.url), err.status)
    if DEVICELOGIN.match(path):
        if method == "GET":
            return _page(emu, prefill=query.get("otc", ""))
        if method == "POST":
            return _sign_in(emu, body if isinstance(body, dict) else {})
        return Response(status_code=405, headers={"Allow": "GET, POST"})
    for regex, handler in ((IMDS, emu.managed_identities.imds), (APP_SERVICE, emu.managed_identities.app_service)):
        if regex.match(path):
            if method != "GET":
                return Response(status_code=405, headers={"Allow": "GET"})
            with emu.state.lock:
                emu.state.counters["token_requests"] += 1
            entry["client_id"] = query.get("client_id")
            try:
                result, ident = handler(query, headers)
            except MiError as err:
                return _json(err.body, err.status)
            entry["client_id"] = ident["client_id"]
            return _json(result)
    found = OIDC_ISSUER.match(path)
    if found:
        fed = emu.tokens.federation
        return _json(fed.discovery() if found.group("what").startswith(".well-known") else fed.jwks())
    return None


# ---- the verification page (what https://microsoft.com/devicelogin is to Entra) ------------------------------
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Enter code - MDE emulator</title>
<style>body{{font-family:sans-serif;max-width:40em;margin:3em auto}}label{{display:block;margin:1em 0}}
input,select{{font-size:1.2em}}.msg{{padding:.5em;background:#eef}}.err{{padding:.5em;background:#fee}}</style></head>
<body><h1>Enter code</h1>{message}
<p>Enter the code displayed on your app or device (emulated Microsoft Entra sign-in; no password is asked).</p>
<form method="post" action="/devicelogin">
<label>Code <input name="otc" value="{prefill}" autofocus autocomplete="off"></label>
<label>Sign in as <select name="user">{users}</select></label>
<button name="action" value="approve">Continue</button> <button name="action" value="decline">Cancel sign-in</button>
</form>
<h2>Waiting for sign-in</h2><ul>{pending}</ul>
</body></html>
"""


def _page(emu, prefill="", message="", status=200):
    users = "".join('<option value="%s">%s (%s)</option>' % (html.escape(u["upn"]), html.escape(u["display_name"]), html.escape(u["upn"]))
                    for u in emu.user_auth.users.values())
    pending = "".join("<li><code>%s</code> - %s (%s)</li>" % (html.escape(f["user_code"]), html.escape(f["app"]), html.escape(" ".join(f["scopes"])))
                      for f in emu.user_auth.flows_view() if f["status"] == "pending") or "<li>none</li>"
    text = PAGE.format(message=message, prefill=html.escape(prefill), users=users, pending=pending)
    return Response(text, status_code=status, headers={"content-type": "text/html; charset=utf-8"})


def _sign_in(emu, form):
    code = (form.get("otc") or "").strip()
    decline = form.get("action") == "decline"
    if not code:
        return _page(emu, message='<p class="err">Enter the code displayed on your app or device.</p>', status=400)
    try:
        flow = emu.user_auth.approve(code, form.get("user"), decline=decline)
    except (LookupError, ValueError):
        return _page(emu, prefill=code, message='<p class="err">That code didn\'t work. Check the code and try again.</p>', status=400)
    app = emu.tokens.apps.get(flow["app"], {}).get("display_name", flow["app"])
    if decline:
        text = "You have declined to sign in to %s on the other device. You may now close this window." % app
    else:
        text = "You have signed in to the %s application on your device as %s. You may now close this window." % (app, flow["user"])
    return _page(emu, message='<p class="msg">%s</p>' % html.escape(text))


# ---- /_emulator admin -----------------------------------------------------------------------------------
def admin(emu, method, name, data):
    """Answer an admin request of this module, or return None."""
    try:
        if (method, name) == ("GET", "devicecode"):
            return _json(emu.device_flows())
        if (method, name) == ("POST", "devicecode/approve"):
            return _json(emu.approve_device_code(user_code=data.get("user_code"), user=data.get("user"), decline=bool(data.get("decline"))))
        if (method, name) == ("POST", "devicecode/config"):
            return _json(emu.configure_device_code(**data))
        if (method, name) == ("POST", "revoke_refresh_tokens"):
            return _json({"revoked": emu.revoke_refresh_tokens(user=data.get("user"), expire=bool(data.get("expire")))})
        if (method, name) == ("POST", "federated_token"):
            return _json({"token": emu.federated_token(**data)})
    except LookupError as exc:
        return _json({"error": str(exc)}, 404)
    except (TypeError, ValueError) as exc:
        return _json({"error": str(exc)}, 400)
    return None
