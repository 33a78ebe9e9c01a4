"""Shared pieces of the API handlers: errors, responses, request context, body validation."""

import json
import re

from starlette.responses import Response

from .odata import canonical_time

ODATA_JSON = "application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8"
ERROR_JSON = "application/json; charset=utf-8"
GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class ApiError(Exception):
    """An MDE error answered as ``{"error": {"code", "message", "target"}}``."""

    def __init__(self, status, code, message, headers=None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_response(status, code, message, target, headers=None):
    body = json.dumps({"error": {"code": code, "message": message, "target": target}})
    return Response(body, status_code=status, media_type=None, headers=dict(headers or {}, **{"content-type": ERROR_JSON}))


def json_response(obj, status=200, raw=None):
    body = raw if raw is not None else json.dumps(obj)
    return Response(body, status_code=status, headers={"content-type": ODATA_JSON, "OData-Version": "4.0"})


def collection_response(ctx, entity_set, items_json, next_link=None):
    """Build an OData collection from already-serialised items (list of JSON strings)."""
    head = '{"@odata.context": %s' % json.dumps("%s/api/$metadata#%s" % (ctx.base_url, entity_set))
    if next_link:
        head += ', "@odata.nextLink": %s' % json.dumps(next_link)
    return json_response(None, raw=head + ', "value": [' + ",".join(items_json) + "]}")


def entity_response(ctx, context_suffix, entity, status=200):
    body = {"@odata.context": "%s/api/$metadata#%s" % (ctx.base_url, context_suffix)}
    body.update(public(entity))
    return json_response(body, status=status)


def public(entity):
    """Drop private (underscore) keys."""
    return {k: v for k, v in entity.items() if not k.startswith("_")}


class Ctx:
    """Per-request context handed to handlers."""

    def __init__(self, state, method, path, query, body, app, base_url, raw_query="", user=None):
        self.state = state
        self.method = method
        self.path = path
        self.query = query
        self.body = body
        self.app = app
        self.base_url = base_url
        self.raw_query = raw_query
        self.user = user  # the signed-in user of a delegated token ({"upn", "display_name", "oid"}); None for app tokens

    @property
    def client_id(self):
        return self.app["client_id"] if self.app else None

    @property
    def delegated(self):
        return self.user is not None

    @property
    def requestor(self):
        """Who a machine action, comment or indicator is attributed to: the user's UPN, else the app's client id."""
        return self.user["upn"] if self.user else self.client_id

    @property
    def actor_name(self):
        """The name shown as an entity's source / last updater: the user's UPN, else the app's display name."""
        return self.user["upn"] if self.user else (self.app.get("display_name") or self.client_id)

    @property
    def actor_display_name(self):
        return self.user["display_name"] if self.user else (self.app.get("display_name") or self.client_id)

    @property
    def source_type(self):
        """An indicator's ``sourceType``: ``User`` for a signed-in user, ``AadApp`` for an app."""
        return "User" if self.user else "AadApp"


def require_object(body):
    if not isinstance(body, dict):
        raise ApiError(400, "InvalidRequestBody", "Request body is incorrect: a JSON object is required")
    return body


def check_body(body, required=(), optional=()):
    """Validate a JSON body against case-sensitive property names.

    A property that matches a known name only case-insensitively is ``InvalidRequestBody``; a missing required
    property is ``MissingRequiredParameter``. Unknown properties are ignored.
    """
    body = require_object(body)
    known = {name.lower(): name for name in tuple(required) + tuple(optional)}
    for key in body:
        canon = known.get(key.lower())
        if canon is not None and canon != key:
            raise ApiError(400, "InvalidRequestBody", "Request body is incorrect: unknown property '%s' (property names are case-sensitive; "
                           "expected '%s')" % (key, canon))
    for name in required:
        if body.get(name) is None or body.get(name) == "":
            raise ApiError(400, "MissingRequiredParameter", "Parameter %s is missing" % name)
    return body


def check_enum(body, name, allowed, code="InvalidRequestBody"):
    value = body.get(name)
    if value is not None and value not in allowed:
        raise ApiError(400, code, "Request body is incorrect: '%s' is not a valid value for %s. Allowed values: %s" % (value, name, ", ".join(allowed)))
    return value


def normalize_time(value, name):
    if value is None:
        return None
    try:
        return canonical_time(value)
    except ValueError as exc:
        raise ApiError(400, "InvalidRequestBody", "Request body is incorrect: %s is not a valid DateTimeOffset: %r" % (name, value)) from exc


def page(items, top, skip):
    end = None if top is None else skip + top
    return items[skip:end]
