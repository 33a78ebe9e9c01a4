"""The ASGI application: request log, fault injection, token endpoint, auth, permissions, rate limits, routing."""

import asyncio
import io
import json
import logging
import re
import time
import traceback
import uuid
import zipfile
from urllib.parse import parse_qsl

import jwt
from starlette.responses import Response

from . import api_actions, api_alerts, api_entities, api_indicators, api_live_response, api_machines, api_tvm, hunting
from . import graph  # Microsoft Graph security (/v1.0/security/...)
from . import identity_routes  # device code flow, managed identity endpoints, OIDC issuer
from .auth import AadError
from .auth_user import defender_role, delegated_requirement, signed_in_user
from .common import ApiError, Ctx, error_response
from .odata import ODataError

LOG = logging.getLogger("tests.emulator")
API_PREFIX = re.compile(r"^/api(?:/v1\.0)?(?=/|$)", re.I)
TOKEN_V2 = re.compile(r"^/(?P<tenant>[^/]+)/oauth2/v2\.0/token/?$")
TOKEN_V1 = re.compile(r"^/(?P<tenant>[^/]+)/oauth2/token/?$")
OIDC = re.compile(r"^/(?P<tenant>[^/]+)/v2\.0/\.well-known/openid-configuration/?$")
JWKS = re.compile(r"^/(?P<tenant>[^/]+)/discovery/v2\.0/keys/?$")
REDACT = ("client_secret", "client_assertion", "password", "refresh_token", "device_code", "code")


class Route:
    """One API endpoint: regex over the path after /api, handler, required roles (any of), rate family."""

    def __init__(self, method, pattern, template, handler, roles, family):
        self.method = method
        self.regex = re.compile("^%s/?$" % pattern, re.I)
        self.template = template
        self.handler = handler
        self.roles = tuple(roles)
        self.family = family


# api_tvm first: its /machines/SoftwareVulnerabilitiesByMachine must win over /machines/{id}.
API_MODULES = (api_tvm, api_machines, api_actions, api_live_response, api_entities, api_indicators, api_alerts, hunting)
ROUTES = [Route(*r) for module in API_MODULES for r in module.ROUTES]


def _family(path):
    if API_PREFIX.match(path):
        rest = API_PREFIX.sub("", path).strip("/").split("/")[0].split("(")[0].lower()
        return rest or "api"
    if graph.GRAPH_PREFIX.match(path):
        return "graph"
    if TOKEN_V2.match(path) or TOKEN_V1.match(path):
        return "token"
    if OIDC.match(path) or JWKS.match(path):
        return "discovery"
    return identity_routes.family(path) or "other"


def _parse_body(raw, content_type):
    if not raw:
        return None
    if content_type.lower().startswith("multipart/form-data"):  # a library upload: its file logged by name, size, sha256
        try:
            return api_live_response.logged_form(api_live_response.parse_multipart(raw, content_type))
        except ValueError:
            return None
    text = raw.decode("utf-8", "replace")
    if "application/x-www-form-urlencoded" in content_type:
        return dict(parse_qsl(text, keep_blank_values=True))
    try:
        return json.loads(text)
    except ValueError:
        return text


def _redacted(body):
    if isinstance(body, dict):
        return {k: ("REDACTED" if k.lower() in REDACT else v) for k, v in body.items()}
    return body


def make_package_zip(action_id):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("README.txt", "Emulated investigation package for machine action %s\n" % action_id)
        archive.writestr("Processes/processes.csv", "Name,Pid\nexplorer.exe,800\npowershell.exe,1234\n")
        archive.writestr("Network connections/ActiveNetConnections.txt", "TCP 10.0.0.5:50123 198.51.100.7:443 ESTABLISHED\n")
    return buf.getvalue()


class EmulatorApp:
    """ASGI entry point; ``emulator`` is the :class:`tests.emulator.Emulator` owning state and tokens."""

    def __init__(self, emulator):
        self.emu = emulator

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)
        method = scope["method"]
        path = scope["path"]
        query_string = scope.get("query_string", b"").decode("latin-1")
        query = dict(parse_qsl(query_string, keep_blank_values=True))
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if path.startswith("/_emulator/"):
            response = self.admin(method, path, raw)
            await response(scope, receive, send)
            return
        state = self.emu.state
        body = _parse_body(raw, headers.get("content-type", ""))
        entry = {"method": method, "path": path, "query": query, "status": None, "client_id": None, "time": time.time(),
                 "body": _redacted(body), "family": _family(path)}
        if isinstance(body, dict) and "client_id" in body:
            entry["client_id"] = body.get("client_id")
        with state.lock:
            state.log.append(entry)
        fault = state.take_fault(method, path, lambda: self.token_tenant(headers))
        entry["processed"] = False
        if fault is not None:
            entry["fault"] = fault["kind"]
            entry["tenant"] = self.token_tenant(headers)  # a faulted request is logged in its token's tenant too
            if fault["kind"] == "delay":
                await asyncio.sleep(fault["delay"])
            elif fault["kind"] == "drop":
                await self.drop(send)
                return
            elif not fault["kind"].endswith("_after") and fault["kind"] != "tamper":
                response = self.fault_response(fault, path)
                entry["status"] = response.status_code
                await response(scope, receive, send)
                return
        try:
            response = self.dispatch(method, path, query, query_string, raw, body, headers, entry)
        except Exception:  # pylint: disable=broad-except
            LOG.error("emulator error: %s", traceback.format_exc())
            response = error_response(500, "InternalServerError", "", str(uuid.uuid4()))
        entry["processed"] = True
        entry["status"] = response.status_code
        if fault is not None and fault["kind"] == "tamper":
            response = self.tampered(response, fault["fields"])
        if fault is not None and fault["kind"].endswith("_after"):
            # The API carried the request out (``handled_status`` is its answer); the client never sees that answer.
            entry["handled_status"] = response.status_code
            if fault["kind"] == "drop_after":
                entry["status"] = None
                await self.drop(send)
                return
            response = self.fault_response(fault, path)
            entry["status"] = response.status_code
        await response(scope, receive, send)

    @staticmethod
    def token_tenant(headers):
        """The ``tid`` of the request's bearer token, unverified (only to pick a fault meant for one tenant)."""
        auth = headers.get("authorization", "")
        try:
            return jwt.decode(auth[7:].strip(), options={"verify_signature": False}).get("tid") if auth[:7].lower() == "bearer " else None
        except jwt.PyJWTError:
            return None

    @staticmethod
    async def drop(send):
        """Close the connection without an answer."""
        transport = getattr(getattr(send, "__self__", None), "transport", None)
        if transport is not None:
            transport.close()
            await asyncio.sleep(0.05)
            return
        raise ConnectionAbortedError("emulated connection drop")

    @staticmethod
    def tampered(response, fields):
        """``response`` with ``fields`` written over its JSON entity (or over each entity of its ``value``)."""
        try:
            data = json.loads(response.body)
        except (AttributeError, ValueError):
            return response
        targets = data.get("value") if isinstance(data, dict) and isinstance(data.get("value"), list) else [data]
        for target in targets:
            if isinstance(target, dict):
                target.update(fields)
        return Response(json.dumps(data), status_code=response.status_code,
                        headers={"content-type": "application/json; charset=utf-8"})

    @staticmethod
    def fault_response(fault, path=""):
        if fault["kind"] != "invalid_json" and graph.GRAPH_PREFIX.match(path):
            return graph.fault_response(fault)
        if fault["kind"] == "invalid_json":
            return Response("<html><body>Service Unavailable: emulated non-JSON body", status_code=200,
                            headers={"content-type": "application/json; charset=utf-8"})
        status = fault["status"]
        headers = {}
        codes = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 429: "TooManyRequests", 500: "InternalServerError"}
        if status == 429 and fault.get("retry_after") is not None:
            headers["Retry-After"] = str(fault["retry_after"])
        return error_response(status, codes.get(status, "InternalServerError" if status >= 500 else "BadRequest"),
                              fault.get("message") or "Emulated fault (HTTP %d)" % status, str(uuid.uuid4()), headers)

    # ---- dispatch -------------------------------------------------------------------------------
    def dispatch(self, method, path, query, query_string, raw, body, headers, entry):
        emu = self.emu
        match = API_PREFIX.match(path)
        if match:
            return self.api(method, path, path[match.end():] or "/", query, query_string, raw, headers, entry)
        if graph.GRAPH_PREFIX.match(path):
            return graph.handle(self, method, path, query, raw, headers, entry)
        for regex, kind in ((TOKEN_V2, "v2"), (TOKEN_V1, "v1")):
            found = regex.match(path)
            if found:
                if method != "POST":
                    return Response(status_code=405, headers={"Allow": "POST"})
                with emu.state.lock:
                    emu.state.counters["token_requests"] += 1
                form = body if isinstance(body, dict) else {}
                entry["tenant"] = emu.tokens.tenant_of(found.group("tenant"))
                token_url = "%s%s" % (emu.url, path.rstrip("/"))
                try:
                    result = emu.tokens.token_request(found.group("tenant"), form, token_url, v1=kind == "v1")
                except AadError as err:
                    return Response(json.dumps(err.body(emu.url)), status_code=err.status, headers={"content-type": "application/json; charset=utf-8"})
                return Response(json.dumps(result), headers={"content-type": "application/json; charset=utf-8", "Cache-Control": "no-store, no-cache"})
        found = OIDC.match(path)
        if found:
            tenant = found.group("tenant")
            if tenant.lower() not in ("organizations", "common") and emu.tokens.tenant_of(tenant) is None:
                err = AadError(400, "invalid_tenant", 90002, "Tenant '%s' not found. Check to make sure you have the correct tenant ID and are "
                               "signing into the correct cloud." % tenant)
                return Response(json.dumps(err.body(emu.url)), status_code=400, headers={"content-type": "application/json; charset=utf-8"})
            return Response(json.dumps(emu.tokens.openid_configuration(emu.url, tenant)), headers={"content-type": "application/json; charset=utf-8"})
        if JWKS.match(path):
            return Response(json.dumps(emu.tokens.jwks()), headers={"content-type": "application/json; charset=utf-8"})
        response = identity_routes.dispatch(emu, method, path, query, body, headers, entry)
        if response is not None:
            return response
        if api_live_response.BLOB_PATH.match(path):  # pre-signed live response result links
            return api_live_response.serve_result(emu, method, path, query, headers, entry)
        return error_response(404, "NotFound", "No resource at %s" % path, str(uuid.uuid4()))

    def api(self, method, path, rest, query, query_string, raw, headers, entry):
        emu = self.emu
        state = emu.state
        target = str(uuid.uuid4())
        route, groups, allowed = None, None, []
        for candidate in ROUTES:
            found = candidate.regex.match(rest)
            if found:
                if candidate.method == method:
                    route, groups = candidate, found.groupdict()
                    break
                allowed.append(candidate.method)
        if route is None:
            if allowed:
                return Response(status_code=405, headers={"Allow": ", ".join(sorted(set(allowed)))})
            return error_response(404, "NotFound", "Resource not found: %s" % path, target)
        entry["route"] = "%s %s" % (method, route.template)
        with state.lock:
            state.count_call(entry["route"])
        auth = headers.get("authorization", "")
        if not auth.lower().startswith("bearer "):
            return error_response(401, "Unauthorized", "Authorization header with a Bearer token is missing", target)
        claims, problem = emu.tokens.verify(auth[7:].strip())
        if claims is None:
            return error_response(401, "Unauthorized", problem, target)
        entry["client_id"] = claims.get("appid")
        entry["tenant"] = claims["tid"]
        state = emu.state_of(claims["tid"])  # the token's tenant: its machines, alerts, indicators and limits
        roles = claims.get("roles") or []
        user = signed_in_user(claims)
        if user is not None:  # a delegated token: its scp must hold the route's delegated permission
            entry["user"] = user["upn"]
            roles = claims["scp"].split()
            needed = delegated_requirement(route.template, route.roles)
            if not any(perm in roles for perm in needed):
                return error_response(403, "Forbidden", "The user does not have any of the required delegated permissions (%s) to access the "
                                      "resource." % ", ".join(needed), target)
            account = emu.user_auth.user(user["upn"]) or {}
            role = defender_role(method, route.template)
            if role not in account.get("defender_roles", ()):
                return error_response(403, "Forbidden", "The user %s does not have the role permission '%s' required for this action." % (
                    user["upn"], role), target)
        elif not any(role in roles for role in route.roles):
            return error_response(403, "Forbidden", "The application does not have any of the required application permissions (%s) to access the "
                                  "resource." % ", ".join(route.roles), target)
        key = (claims["tid"],) if route.family == "hunting" else (claims["tid"], claims.get("appid"))
        retry = state.rate_check(key + (route.template,), route.family)
        if retry is not None:
            return error_response(429, "TooManyRequests", "API calls quota exceeded! Maximum allowed calls per time window were reached. Retry "
                                  "after %d seconds." % retry, target, {"Retry-After": str(retry)})
        body = None
        if headers.get("content-type", "").lower().startswith("multipart/form-data"):
            try:
                body = dict(api_live_response.parse_multipart(raw, headers["content-type"]), _multipart=True)
            except ValueError:
                return error_response(400, "InvalidRequestBody", "Request body is incorrect: not valid multipart/form-data", target)
        elif raw.strip():
            try:
                body = json.loads(raw)
            except ValueError:
                return error_response(400, "InvalidRequestBody", "Request body is incorrect: not valid JSON", target)
        app = emu.tokens.app_by_client(claims.get("appid"))
        if app is None:
            app = {"client_id": claims.get("appid"), "display_name": claims.get("app_displayname"), "roles": roles}
        app = dict(app, roles=roles)
        ctx = Ctx(state, method, path, query, body, app, emu.url, query_string, user=user)
        try:
            with state.lock:
                return route.handler(ctx, **groups)
        except ApiError as err:
            return error_response(err.status, err.code, err.message, target, err.headers)
        except ODataError as err:
            return error_response(400, "ODataError", str(err), target)

    # ---- /_emulator admin -------------------------------------------------------------------------
    def admin(self, method, path, raw):
        emu = self.emu
        name = path[len("/_emulator/"):].strip("/")

        def ok(obj):
            return Response(json.dumps(obj, default=str), headers={"content-type": "application/json"})
        try:
            data = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return Response('{"error": "invalid JSON"}', status_code=400, headers={"content-type": "application/json"})
        if name.startswith("packages/") and method == "GET":
            return Response(make_package_zip(name[len("packages/"):].rsplit(".", 1)[0]), headers={"content-type": "application/zip"})
        handlers = {
            ("GET", "log"): lambda: ok(emu.log),
            ("GET", "counters"): lambda: ok(emu.counters),
            ("GET", "config"): lambda: ok(emu.config()),
            ("POST", "reset"): lambda: (emu.reset(), ok({"reset": True}))[1],
            ("POST", "clear_log"): lambda: (emu.clear_log(), ok({"cleared": True}))[1],
            ("POST", "expire_tokens"): lambda: (emu.expire_tokens(), ok({"expired": True}))[1],
            ("POST", "faults"): lambda: (emu.inject_fault(**data), ok({"added": True}))[1],
            ("POST", "action_outcome"): lambda: (emu.set_action_outcome(**data), ok({"set": True}))[1],
            ("GET", "tenants"): lambda: ok(emu.tenants()),
            ("POST", "tenants"): lambda: ok({"tenant_id": emu.add_tenant(**data)}),
            ("POST", "consent"): lambda: (emu.consent(**data), ok(emu.tenants()))[1],
        }
        handler = handlers.get((method, name))
        if handler is None:
            response = identity_routes.admin(emu, method, name, data)
            if response is not None:
                return response
            return Response('{"error": "unknown emulator endpoint"}', status_code=404, headers={"content-type": "application/json"})
        try:
            return handler()
        except (TypeError, ValueError) as exc:
            return Response(json.dumps({"error": str(exc)}), status_code=400, headers={"content-type": "application/json"})
