# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""MDEClient: the one place of the collection that speaks HTTP to Defender for Endpoint.

Plain Python on requests (no Ansible import), so it is the same code under modules (AnsiballZ) and
under the inventory plugin. It owns the session, paging, retries, throttling and error texts.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math
import random
import re
import time

try:
    import requests
    HAS_REQUESTS = True
    REQUESTS_IMPORT_ERROR = None
except ImportError as e:  # pragma: no cover - reported by MDEModule through missing_required_lib
    requests = None
    HAS_REQUESTS = False
    REQUESTS_IMPORT_ERROR = e

try:
    from urllib.parse import urlsplit
except ImportError:  # pragma: no cover
    from urlparse import urlsplit  # type: ignore

from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEAuthError, MDEError, quoted
from ansible_collections.defender.endpoint.plugins.module_utils.permissions import required_permission
from ansible_collections.defender.endpoint.plugins.module_utils.throttle import MAX_BLOCK, family

# The collection's version, as galaxy.yml's ``version:`` gives it. module_utils cannot read galaxy.yml at run time (an
# installed collection may not ship it, and a task may run from a zip), so it is kept here; a unit test
# (tests/unit/plugins/module_utils/test_client.py) fails when the two differ, so a release bumps both.
COLLECTION_VERSION = "0.1.0"
USER_AGENT = "defender.endpoint-ansible-collection/%s" % COLLECTION_VERSION
MAX_PAGE_SIZE = 10000
# A request (connection, answer and its whole body) ends after this many times the timeout option.
DEADLINE_FACTOR = 4
RETRY_STATUSES = (500, 502, 503, 504)
# Retry-After: never less than a second between attempts; never more than MAX_RETRY_AFTER (the API asking for
# longer fails the task at once, naming when to try again, instead of waiting several times the cap in vain).
MIN_RETRY_AFTER = 1.0
MAX_RETRY_AFTER = MAX_BLOCK
# A Retry-After is clamped to this many seconds (a day) as soon as it is read, before any arithmetic: "1e308" or
# "inf" would otherwise overflow a date. Any value over MAX_RETRY_AFTER fails the task anyway.
RETRY_AFTER_CLAMP = 86400.0
# No download is accepted past this many bytes, whatever the server says: the largest file Microsoft documents a
# download of, a live response GetFile ("up to 3 GB": https://learn.microsoft.com/en-us/defender-endpoint/live-response).
MAX_DOWNLOAD = 3 * 1024 ** 3
# Paging stops with an error past this many pages, or this many empty pages in a row that each link to another.
MAX_PAGES = 5000
MAX_EMPTY_PAGES = 3
# What an @odata.nextLink may never contain: a backslash or "@" (another host to some URL parsers), white space or
# control characters.
_UNSAFE_LINK = re.compile(r"[\\@\s\x00-\x1f\x7f]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

if HAS_REQUESTS:
    class DeadlineExceeded(requests.exceptions.Timeout):
        """The whole answer did not arrive within the request's overall deadline (a body sent too slowly)."""

    class PinnedSession(requests.Session):
        """A session whose TLS verification setting always wins, and whose requests end by a deadline.

        requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override ``Session.verify``; here an
        explicit ``ca_path`` (or ``validate_certs: false``) is passed on every request, so it wins,
        while the default (``True``) still lets those variables point at a corporate bundle.

        ``timeout`` bounds each wait for the connection and for each piece of the answer; ``deadline``
        bounds the whole request (the answer's body included), so a server that sends one byte a second
        cannot hold a task for longer than that.
        """

        def __init__(self, verify=True, timeout=30, deadline=None):
            super(PinnedSession, self).__init__()
            self.pinned_verify = verify
            self.default_timeout = timeout
            self.deadline = deadline if deadline is not None else DEADLINE_FACTOR * timeout
            self.headers["User-Agent"] = USER_AGENT

        def request(self, method, url, *args, **kwargs):  # pylint: disable=arguments-differ
            kwargs["verify"] = self.pinned_verify
            if kwargs.get("timeout") is None:
                kwargs["timeout"] = self.default_timeout
            if kwargs.get("stream"):
                return super(PinnedSession, self).request(method, url, *args, **kwargs)
            started = time.monotonic()
            kwargs["stream"] = True
            resp = super(PinnedSession, self).request(method, url, *args, **kwargs)
            try:
                resp._content = read_body(resp, started + self.deadline, self.deadline)  # pylint: disable=protected-access
                resp._content_consumed = True  # pylint: disable=protected-access
            finally:
                resp.close()
            return resp

    def read_body(resp, deadline, seconds):
        """The whole body of a streamed response, or DeadlineExceeded once the deadline has passed."""
        from urllib3.exceptions import DecodeError, ProtocolError, ReadTimeoutError, SSLError as Urllib3SSLError
        raw = resp.raw
        chunks = []
        try:
            while True:
                if time.monotonic() > deadline:
                    raise DeadlineExceeded("the answer did not arrive in full within %g seconds" % seconds)
                chunk = raw.read1(65536, decode_content=True) if hasattr(raw, "read1") else raw.read(
                    65536, decode_content=True)
                if not chunk:
                    break
                chunks.append(chunk)
        except ProtocolError as e:
            raise requests.exceptions.ChunkedEncodingError(e)
        except DecodeError as e:
            raise requests.exceptions.ContentDecodingError(e)
        except ReadTimeoutError as e:
            raise requests.exceptions.ReadTimeout(e)
        except Urllib3SSLError as e:
            raise requests.exceptions.SSLError(e)
        return b"".join(chunks)
else:  # pragma: no cover
    PinnedSession = DeadlineExceeded = read_body = None


def _took_effect(found):
    """Whether a reconcile function's finding says the write took effect (None and False say it did not)."""
    return found is not None and found is not False


def _sentence(error):
    """An error's text without its closing full stop, to go on in one sentence."""
    return str(error).rstrip().rstrip(".")


def _error_parts(resp):
    """``(error.code, error.message, innerError)`` of an error answer; Graph's ``innerError`` (``request-id``,
    ``date``: https://learn.microsoft.com/en-us/graph/errors) is a dict, or None when absent."""
    try:
        body = resp.json()
    except ValueError:
        return None, None, None
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        inner = err.get("innerError") or err.get("innererror")
        return err.get("code"), err.get("message"), inner if isinstance(inner, dict) else None
    return None, None, None


# Said of a request that failed ambiguously and is not repeated (a POST that is not retry_safe).
NOT_REPEATED = "; it was not repeated, as the API may have carried it out"
# How many times a reconciled write is sent in all: once, and once more when reading back showed it had not taken
# effect (see MDEClient.request's ``reconcile``).
WRITE_SENDS = 2
# After a write's answer timed out, the API may still be carrying it out: the state is read back, with growing
# pauses (seconds), until the request's own deadline has passed, before the write is sent again.
SETTLE_DELAYS = (1.0, 2.0, 4.0, 8.0, 15.0)


class AmbiguousWrite(Exception):
    """A write failed in a way that leaves open whether the API carried it out: a 5xx, a dropped connection, a read
    timeout, a 2xx whose body is not JSON. ``error`` is the MDEError to report; ``timed_out``: no answer came in
    time, so the API may still be carrying it out."""

    def __init__(self, error, timed_out=False):
        super(AmbiguousWrite, self).__init__(str(error))
        self.error = error
        self.timed_out = timed_out


_BEARER = re.compile(r"(?i)\b(bearer)(\s|\\[rnt])+[^\s'\",)\]}]*")


def scrub(text, secrets=()):
    """``text`` without any bearer token or given secret in it (raw or as Python escapes it), whatever the cause."""
    text = _BEARER.sub(r"\1 ********", text)
    for secret in secrets:
        if secret:
            for form in (secret, repr(secret)[1:-1], secret.strip()):
                if len(form) >= 8:
                    text = text.replace(form, "********")
    return text


def _transport_text(exc, timeout=None, secrets=(), host=None):
    """One sentence for a request that got no HTTP answer. A connection that could not be made names ``host``
    (host:port of the URL): a sandbox that sent a call to a real cloud host, or a typo in api_url or graph_url,
    shows where the call went."""
    text = scrub(str(exc), secrets)
    at = " to %s" % host if host else ""
    text = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    if isinstance(exc, requests.exceptions.SSLError):
        return ("TLS certificate verification failed (%s). Set ca_path to the CA bundle that signs the server's "
                "certificate, or validate_certs: false (unsafe)" % text)
    if isinstance(exc, DeadlineExceeded):
        return text
    if isinstance(exc, requests.exceptions.Timeout):
        if isinstance(exc, requests.exceptions.ConnectTimeout) and host:
            return "no connection to %s within the timeout%s" % (host, " of %g seconds" % timeout if timeout else "")
        if timeout is not None:
            return "no answer within the timeout of %g seconds" % timeout
        return "no answer within the timeout (%s)" % text
    if isinstance(exc, requests.exceptions.InvalidHeader):
        return "the request could not be built: a header value has a character HTTP does not allow (a line break " \
               "in a credential?)"
    if not isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        return "the request could not be sent (%s: %s)" % (type(exc).__name__, text)
    if re.search(r"Connection aborted|RemoteDisconnected|Connection reset", text):
        return "connection failed: the server closed it without an answer"
    reason = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if reason:
        return "connection%s failed (%s)" % (at, reason.group(1).strip())
    return "connection%s failed (%s)" % (at, text)


def _host_port(url):
    """``host:port`` of an https URL (443 when it names none)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return "%s:%d" % (parts.hostname, port or (443 if parts.scheme == "https" else 80)) if parts.hostname else None


def _transient(exc):
    """A failure that another attempt may not meet: the connection, a timeout, a body cut short.
    Not a request that cannot be built (a bad header or URL), a TLS failure, or a body sent too slowly."""
    if isinstance(exc, (requests.exceptions.SSLError, DeadlineExceeded)):
        return False
    return isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                            requests.exceptions.ChunkedEncodingError))


def parse_retry_after(value, now=None):
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP-date (RFC 9110, section 10.2.3,
    https://www.rfc-editor.org/rfc/rfc9110#section-10.2.3). At least MIN_RETRY_AFTER; None when unreadable."""
    if value is None:
        return None
    value = str(value).strip()
    try:
        seconds = float(value)
    except ValueError:
        import email.utils
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            import datetime
            when = when.replace(tzinfo=datetime.timezone.utc)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds):
        return None
    return min(max(MIN_RETRY_AFTER, seconds), RETRY_AFTER_CLAMP)


# -- the one retry decision ------------------------------------------------------------------------------------------
# What one answer means for the request that got it (MDEClient._request acts on it; tests hold it as a table):
RETRY = "retry"            # send again after a pause: the answer's Retry-After (on a 5xx), else the backoff
THROTTLED = "throttled"    # 429: the family's budget is blocked for its Retry-After, for every fork, then again
REFRESH = "refresh"        # 401 on a cached token: a new token, then again (once)
AMBIGUOUS = "ambiguous"    # a write that may have taken effect: read back (reconcile), or fail saying it may have
FAIL = "fail"              # fail with the answer's error


def decide(status=None, error=None, retry_safe=True, retry_timeouts=True, refreshable=False):
    """The verdict on one answer that is not a success: an HTTP ``status`` (a 2xx here is one whose body is not
    JSON), or the transport ``error`` raised instead. ``retry_safe``: repeating the request cannot do it twice (a
    read); ``retry_timeouts``: a read that timed out may be sent again (not a hunting query that ran out of time);
    ``refreshable``: a new token may help a 401."""
    if error is not None:
        never_sent = isinstance(error, requests.exceptions.ConnectTimeout) or (
            isinstance(error, requests.exceptions.ConnectionError) and "NewConnectionError" in repr(error)
            and not isinstance(error, requests.exceptions.SSLError))
        if _transient(error) and (never_sent or (retry_safe and (
                retry_timeouts or not isinstance(error, requests.exceptions.ReadTimeout)))):
            return RETRY
        if not (retry_safe or never_sent) and (_transient(error) or isinstance(error, DeadlineExceeded)):
            return AMBIGUOUS
        return FAIL
    if status == 429:
        return THROTTLED
    if status == 401 and refreshable:
        return REFRESH
    if status in RETRY_STATUSES:
        if not retry_safe:
            return AMBIGUOUS
        # retry_timeouts=False: a gateway's 504 is a timeout too (a query that ran out of time is not re-run).
        return RETRY if retry_timeouts or status != 504 else FAIL
    if status >= 400:
        return FAIL
    return RETRY if retry_safe else AMBIGUOUS  # a 2xx whose body is not JSON


class MDEClient:
    """Requests to ``{api_url}/api/...`` with a bearer token, retries, throttling and paging.

    ``graph``: the client of the second API, Microsoft Graph (GraphClient, same session, budget file and warnings,
    its own token for the Graph resource), or None when the client was built without one.
    """

    # Which API this client speaks, for messages: the permission's kind on 403, the API's name on 401.
    permission_kind = "WindowsDefenderATP"
    api_name = "the Defender for Endpoint API"
    headers = {}  # sent with every request of this API

    def __init__(self, api_url, token_provider, session, max_attempts=6, backoff=1.0, max_backoff=30.0,
                 max_retry_after=MAX_RETRY_AFTER, sleep=time.sleep, budget=None, budget_key=None):
        self.api_url = api_url.rstrip("/")
        self.token_provider = token_provider
        self.session = session
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self.sleep = sleep
        self.retries = 0  # how many times a request was repeated (exposed for tests and benchmarks)
        self.reconciled = 0  # how many writes took their result from reading the state back (see write())
        self.clock = time.monotonic
        self.warnings = []  # sentences for the task's warnings (create_client shares the cache's and budget's)
        # The tenant's call budget shared with the other processes on this controller (throttle.py).
        self.budget = budget
        self.budget_key = budget_key or urlsplit(self.api_url).netloc
        self.graph = None

    # -- plumbing -------------------------------------------------------------------------------------
    def _wait(self, attempt, retry_after=None):
        if retry_after is not None:
            delay = min(float(retry_after), self.max_retry_after) + random.uniform(0, 0.5)
        else:
            delay = min(self.backoff * (2 ** (attempt - 1)), self.max_backoff) * random.uniform(0.5, 1.0)
        self.retries += 1
        self.sleep(delay)

    def _error(self, method, path, resp):
        code, api_message, inner = _error_parts(resp)
        # The API's words are untrusted text: escaped and cut before they reach a message (errors.quoted).
        code = quoted(code, 200) if code is not None else None
        api_message = quoted(api_message) if api_message is not None else None
        status = resp.status_code
        reason = quoted(resp.reason or "", 200)
        text = "%s %s failed: HTTP %d %s" % (method, path, status, reason)
        if code:
            text += " (%s)" % code
        if api_message:
            text += ": %s" % str(api_message).rstrip(".")
        permission = None
        if status == 403:
            delegated = getattr(self.token_provider, "delegated", False)
            permission = required_permission(method, path, delegated=delegated)
            if permission and delegated:
                text += ". The signed-in user's token needs the %s delegated permission %s (consented for the public " \
                        "client application), and the user a Defender role that allows this call" % (
                            self.permission_kind, permission)
            elif permission:
                text += ". The Entra ID application needs the %s application permission %s, " \
                        "granted with admin consent" % (self.permission_kind, permission)
        elif status == 401:
            text += ". The access token was rejected by %s (%s)" % (self.api_name, self.token_provider.describe())
        facts = {}
        if inner:
            # Graph's innerError: the request id and date Microsoft support asks for.
            for key, fact in (("request-id", "request_id"), ("date", "request_date")):
                if isinstance(inner.get(key), str) and not _CONTROL.search(inner[key]):
                    facts[fact] = inner[key][:100]
            if facts:
                text += " (%s)" % ", ".join("%s %s" % (k, facts[f]) for k, f in (
                    ("request-id", "request_id"), ("date", "request_date")) if f in facts)
        return MDEError(text + ".", status=status, code=code, api_message=api_message, method=method,
                        path=path, permission=permission, retry_after=resp.headers.get("Retry-After"), **facts)

    def _token(self, method, path):
        """The provider's token; a token refused for want of consent names the permission this call needs."""
        try:
            return self.token_provider.get_token()
        except MDEAuthError as e:
            if e.code == "consent_required" and e.permission is None:
                permission = required_permission(method, path, delegated=True)
                if permission:
                    e.message = "%s %s %s needs the %s delegated permission %s." % (
                        e.message, method, path, self.permission_kind, permission)
                    e.permission = permission
                e.method, e.path = method, path
            raise

    @staticmethod
    def _retry_after(resp):
        return parse_retry_after(resp.headers.get("Retry-After"))

    def _too_long(self, method, path, resp, retry_after):
        """The API asks to wait longer than the collection ever waits: fail now, saying until when."""
        import datetime
        retry_after = min(retry_after, RETRY_AFTER_CLAMP)
        when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=retry_after)
        error = self._error(method, path, resp)
        error.message = "%s The API asks to wait %s before the next call (Retry-After), longer than the %d " \
                        "seconds this collection waits; try again after %s." % (
                            error.message, "%d seconds" % int(retry_after) if retry_after < RETRY_AFTER_CLAMP
                            else "a day or more", int(self.max_retry_after), when.strftime("%Y-%m-%dT%H:%M:%SZ"))
        return error

    @staticmethod
    def _secrets(headers):
        auth = (headers or {}).get("Authorization") or ""
        return (auth, auth[len("Bearer "):]) if auth else ()

    def _settle(self, fam, slot):
        if self.budget is not None and slot is not None:
            self.budget.settle(self.budget_key, fam, slot)

    def request(self, method, path, params=None, json=None, retry_safe=None, ok_statuses=None,
                retry_timeouts=True, reconcile=None, files=None):
        """Send one API request and return the parsed JSON body (None when there is none).

        ``retry_safe``: whether repeating the request after an ambiguous failure (5xx, a dropped
        connection, a read timeout) cannot do anything twice. Defaults to true for GET and DELETE.
        ``retry_timeouts=False``: a read timeout is not repeated even so (an advanced hunting query that
        ran out of time would only spend the tenant's CPU budget again).
        429 and a 401 on a cached token are always retried: the API did nothing with those.

        ``reconcile``: makes this a reconciled write (see write()): a function of no arguments that reads the
        state again and returns what the write produced when it took effect (the entity, or any true value), or
        None when it did not.

        ``files``: a multipart/form-data body instead of JSON, as requests takes it: a list of ``(field, (file name,
        bytes, content type))`` for a file and ``(field, (None, text))`` for a plain field (the live response library
        upload: https://learn.microsoft.com/en-us/defender-endpoint/api/upload-library). Bytes, never an open file,
        so that a retried or reconciled request sends the same body again.
        """
        if reconcile is not None:
            return self.write(method, path, json=json, reconcile=reconcile, params=params, files=files)
        return self._request(method, path, params=params, json=json, retry_safe=retry_safe, ok_statuses=ok_statuses,
                             retry_timeouts=retry_timeouts, files=files)

    def write(self, method, path, json=None, reconcile=None, params=None, files=None):
        """A state-changing request whose answer may be lost: reconciled, never sent twice blindly.

        The request is sent once. A 4xx fails at once; 429 and a 401 on a cached token are retried as for any call
        (the API did nothing with those). An ambiguous failure (a 5xx, a dropped connection, a read timeout, a 2xx
        whose body is not JSON) is answered by ``reconcile()``, which reads the state again: when it returns what
        the write produced, that is the result, as if the answer had arrived; when it returns None, the write is
        sent once more (WRITE_SENDS in all), and reconciled again if that fails ambiguously too. When the answer
        timed out the API may still be carrying the write out, so the state is read back until the request's own
        deadline has passed before it is sent again. Whatever stays open fails with one MDEError saying what was
        sent, what reading back showed, and that nothing more was sent. ``self.reconciled`` counts the writes whose
        result came from reading back.
        """
        method = method.upper()
        shown_path = urlsplit(path).path if "://" in path else path
        failures = []
        sends = 0
        while True:
            sends += 1
            started = self.clock()
            try:
                return self._request(method, path, params=params, json=json, retry_safe=False, strict=True,
                                     files=files)
            except AmbiguousWrite as e:
                failures.append(e.error)
                found = self._read_back(method, shown_path, reconcile, failures, started if e.timed_out else None)
            except MDEError as e:
                # Refused when sent again (an action "already in progress", ids already deleted): the first send may
                # have landed after all, later than the reading back could see it. Read once more before failing.
                if sends == 1:
                    raise
                found = self._read_back(method, shown_path, reconcile, failures + [e])
                if not _took_effect(found):
                    raise
            if _took_effect(found):
                self.reconciled += 1
                return found
            if sends >= WRITE_SENDS:
                raise self._unsettled(method, shown_path, failures)
            self._wait(sends)

    def _read_back(self, method, path, reconcile, failures, timed_out_since=None):
        """``reconcile()``'s finding after an ambiguous failure; with ``timed_out_since`` (when the timed-out request
        was sent), read again with growing pauses until that request's deadline has passed."""
        deadline = None
        if timed_out_since is not None:
            deadline = timed_out_since + (getattr(self.session, "deadline", None) or DEADLINE_FACTOR * getattr(
                self.session, "default_timeout", 30))
        delays = iter(SETTLE_DELAYS)
        while True:
            try:
                found = reconcile()
            except MDEError as e:
                raise MDEError("%s; reading the state back to learn whether it took effect failed too (%s), so it was "
                               "not repeated, as the API may have carried it out." % (
                                   _sentence(failures[-1]), _sentence(e)), status=failures[-1].status,
                               code=failures[-1].code, api_message=failures[-1].api_message, method=method, path=path)
            if _took_effect(found) or deadline is None:
                return found
            remaining = deadline - self.clock()
            if remaining <= 0:
                return None
            self.sleep(min(next(delays, SETTLE_DELAYS[-1]), remaining))

    @staticmethod
    def _unsettled(method, path, failures):
        first = _sentence(failures[0])
        again = _sentence(failures[-1])
        prefix = "%s %s failed: " % (method, path)
        if again.startswith(prefix):
            again = again[len(prefix):]
        last = failures[-1]
        return MDEError("%s; read back, it had not taken effect, so it was sent once more and failed again (%s); read "
                        "back again, it has still not taken effect, and it was not sent a third time." % (first, again),
                        status=last.status, code=last.code, api_message=last.api_message, method=method, path=path,
                        sends=len(failures))

    def _request(self, method, path, params=None, json=None, retry_safe=None, ok_statuses=None, retry_timeouts=True,
                 strict=False, files=None):
        """request() without reconciling. ``strict``: raise AmbiguousWrite for an ambiguous failure."""
        method = method.upper()
        if path.startswith("https://") or path.startswith("http://"):
            url = path
            path = urlsplit(path).path
        else:
            url = self.api_url + path
        if retry_safe is None:
            retry_safe = method in ("GET", "DELETE", "HEAD")
        refreshed = False
        attempt = 0
        fam = family(method, path)
        while True:
            attempt += 1
            # The token first (it may wait for another fork fetching one), then the slot, then at once the call;
            # its answer settles the slot (throttle.RateBudget.settle), a 429 gives it back.
            token = self._token(method, path)
            if _CONTROL.search(token or ""):
                raise MDEAuthError("The access token (%s) contains a line break or another control character; it "
                                   "was not sent." % self.token_provider.describe(), method=method, path=path)
            headers = dict(self.headers, Authorization="Bearer " + token, Accept="application/json")
            slot = self.budget.acquire(self.budget_key, fam) if self.budget is not None else None
            resp = error = None
            try:
                body = {"files": files} if files is not None else {"json": json}
                resp = self.session.request(method, url, params=params, headers=headers, **body)
            except requests.exceptions.RequestException as e:
                error = e
            status = resp.status_code if resp is not None else None
            if status != 429:
                self._settle(fam, slot)
            ok = status is not None and (status < 400 or bool(ok_statuses and status in ok_statuses))
            if ok:
                if status == 204 or not resp.content:
                    return None
                try:
                    return resp.json()
                except ValueError:
                    pass
            verdict = decide(status, error, retry_safe=retry_safe, retry_timeouts=retry_timeouts,
                             refreshable=self.token_provider.refreshable and not refreshed)
            if verdict == REFRESH:
                refreshed = True
                self.token_provider.get_token(force_refresh=True)
                continue
            if verdict == THROTTLED:
                retry_after = self._retry_after(resp)
                if retry_after is not None and retry_after > self.max_retry_after:
                    # Not recorded in the shared budget: no task waits for it, so no later run must sit it out. The
                    # refused call's slot settles as any answered call's does.
                    self._settle(fam, slot)
                    raise self._too_long(method, path, resp, retry_after)
                if self.budget is not None:
                    # Every fork waits for this Retry-After, not only this one; acquire() does the waiting.
                    if retry_after is None:
                        retry_after = min(self.backoff * (2 ** (attempt - 1)), self.max_backoff)
                    self.budget.blocked(self.budget_key, fam, retry_after, slot=slot)
                if attempt < self.max_attempts:
                    if self.budget is not None:
                        self.retries += 1
                    else:
                        self._wait(attempt, retry_after)
                    continue
                verdict = FAIL
            if verdict == RETRY and attempt < self.max_attempts:
                retry_after = self._retry_after(resp) if status is not None and status >= 500 else None
                if retry_after is not None and retry_after > self.max_retry_after:
                    raise self._too_long(method, path, resp, retry_after)
                self._wait(attempt, retry_after)
                continue
            # A retry with no attempt left fails as it is (only reads and requests never sent are retried).
            raise self._failure(method, path, url, headers, resp, error, ambiguous=verdict == AMBIGUOUS, strict=strict)

    def _failure(self, method, path, url, headers, resp, error, ambiguous, strict):
        """The exception a request ends with: AmbiguousWrite for an ambiguous write with ``strict`` (the caller
        reconciles), else MDEError, saying so when a write may have taken effect."""
        if error is not None:
            text = "%s %s failed: %s" % (method, path, _transport_text(
                error, getattr(self.session, "default_timeout", None), secrets=self._secrets(headers),
                host=_host_port(url)))
            failure = MDEError(text + ".", method=method, path=path)
            timed_out = isinstance(error, (requests.exceptions.ReadTimeout, DeadlineExceeded))
        elif resp.status_code >= 400:
            failure, timed_out = self._error(method, path, resp), False
        else:
            failure = MDEError("%s %s failed: HTTP %d with a body that is not JSON (%d bytes, Content-Type %s)." % (
                method, path, resp.status_code, len(resp.content), resp.headers.get("Content-Type")),
                status=resp.status_code, method=method, path=path)
            timed_out = False
        if ambiguous and strict:
            return AmbiguousWrite(failure, timed_out=timed_out)
        if ambiguous:
            failure.message = failure.message[:-1] + NOT_REPEATED + "."
        return failure

    def get(self, path, params=None, **kwargs):
        return self.request("GET", path, params=params, **kwargs)

    def post(self, path, json=None, **kwargs):
        return self.request("POST", path, json=json, **kwargs)

    def patch(self, path, json=None, **kwargs):
        return self.request("PATCH", path, json=json, **kwargs)

    def delete(self, path, **kwargs):
        return self.request("DELETE", path, **kwargs)

    # -- paging ---------------------------------------------------------------------------------------
    def next_link(self, link, path):
        """The URL to request for an ``@odata.nextLink``: its path and query joined onto this client's own base URL.

        The link must start with the base URL itself; a backslash, an ``@``, white space or a control character
        anywhere in it is refused, so no parser can read another host out of it and be sent the token
        (https://learn.microsoft.com/en-us/graph/paging).
        """
        link = str(link)
        if _UNSAFE_LINK.search(link) or not link.startswith(self.api_url + "/"):
            host = urlsplit(link.replace("\\", "/")).hostname if "://" in link else None
            raise MDEError("GET %s failed: the API sent an @odata.nextLink %s; not following it with the token." % (
                path, "to another host (%s)" % host if host and host != urlsplit(self.api_url).hostname
                else "that is not a plain URL of the API"), method="GET", path=path)
        return self.api_url + link[len(self.api_url):]

    def pages(self, path, odata_filter=None, params=None, limit=None, page_size=MAX_PAGE_SIZE, empty_on_404=False,
              use_top=True):
        """Yield the entities of a collection one page (a list) at a time: the one paging loop of the collection.

        Follows ``@odata.nextLink`` when the API sends one (only onto the API's own base URL; a link seen
        twice is a loop and an error); otherwise pages with ``$top``/``$skip`` until a short page. At most
        MAX_PAGES pages, and MAX_EMPTY_PAGES empty pages in a row, are read before it stops with an error.
        ``use_top=False``: for endpoints that take no ``$top``/``$skip`` (the vulnerability management ones): plain
        GETs with ``params``, then only the nextLinks. ``limit``: at most this many entities in all.
        ``empty_on_404``: the machine listing answers 404 when there are no recent machines.
        """
        page_size = max(1, min(int(page_size), MAX_PAGE_SIZE))
        base = dict(params or {})
        if odata_filter:
            base["$filter"] = odata_filter
        count = skip = pages = empty = 0
        next_link = None
        seen_links = set()
        previous_first = None
        while True:
            top = page_size if limit is None else min(page_size, limit - count)
            if top <= 0:
                return
            if pages >= MAX_PAGES:
                raise MDEError("GET %s failed: stopped after %d pages (%d items), the most this collection reads from "
                               "one listing; narrow it with a filter." % (path, pages, count), method="GET", path=path)
            pages += 1
            try:
                if next_link:
                    data = self.request("GET", next_link)
                else:
                    query = dict(base)
                    if use_top:
                        query["$top"] = top
                        if skip:
                            query["$skip"] = skip
                    data = self.request("GET", path, params=query)
            except MDEError as e:
                if empty_on_404 and e.status == 404 and count == 0:
                    return
                raise
            items = (data or {}).get("value") or []
            if items and skip and items[0] == previous_first:
                raise MDEError("GET %s failed: the API returned the same page twice while paging; stopped after "
                               "%d items." % (path, count), method="GET", path=path)
            previous_first = items[0] if items else None
            if limit is not None and count + len(items) > limit:
                items = items[:limit - count]
            if items:
                yield items
            count += len(items)
            if limit is not None and count >= limit:
                return
            skip += len(items)
            empty = 0 if items else empty + 1
            link = (data or {}).get("@odata.nextLink")
            if link:
                if empty >= MAX_EMPTY_PAGES:
                    raise MDEError("GET %s failed: the API sent %d empty pages in a row, each with a link to another; "
                                   "stopped after %d items." % (path, empty, count), method="GET", path=path)
                link = self.next_link(link, path)
                if link in seen_links:
                    raise MDEError("GET %s failed: @odata.nextLink points back to a page already read; stopped "
                                   "after %d items." % (path, count), method="GET", path=path)
                seen_links.add(link)
                next_link = link
                continue
            next_link = None
            if not use_top or len(items) < top:
                return

    def list(self, path, odata_filter=None, params=None, limit=None, page_size=MAX_PAGE_SIZE, empty_on_404=False,
             use_top=True):
        """Yield every entity of a collection, all pages (see pages())."""
        for items in self.pages(path, odata_filter=odata_filter, params=params, limit=limit, page_size=page_size,
                                empty_on_404=empty_on_404, use_top=use_top):
            yield from items

    # -- pre-signed downloads ---------------------------------------------------------------------------
    def download(self, url, dest, what="the file", deadline=None, chunk_size=1024 * 1024, max_size=MAX_DOWNLOAD):
        """GET a pre-signed ``url`` into the file ``dest``, without the bearer token: downloads.download()."""
        from ansible_collections.defender.endpoint.plugins.module_utils import downloads
        return downloads.download(self, url, dest, what=what, deadline=deadline, chunk_size=chunk_size,
                                  max_size=max_size)


class GraphClient(MDEClient):
    """Requests to Microsoft Graph (``{graph_url}/v1.0/security/...``), with Graph's own token (scope
    ``<graph host>/.default``), error shape (``error.code``, ``error.message``, ``innerError``), permissions and
    throttling (429 + Retry-After: https://learn.microsoft.com/en-us/graph/throttling), in the same shared budget file.
    Retries, reconciled writes and paging are MDEClient's; an ``@odata.nextLink`` is followed only onto the Graph
    base URL. Paths start with ``/v1.0/``; the domain helpers (incidents.py, hunting.py) hold them."""

    permission_kind = "Microsoft Graph"
    api_name = "Microsoft Graph"
    # Graph's evolvable enums: members defined after unknownFutureValue (an incident's status awaitingAction) are sent,
    # accepted in a filter and returned only with this header
    # (https://learn.microsoft.com/en-us/graph/best-practices-concept#handling-future-members-in-evolvable-enumerations,
    # https://learn.microsoft.com/en-us/graph/api/resources/security-incident).
    headers = {"Prefer": "include-unknown-enum-members"}
