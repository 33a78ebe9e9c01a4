# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Downloads of pre-signed links (an investigation package, a live response result): no bearer token, https only,
a size cap, atomic private files. Plain Python: no Ansible import. MDEClient.download() is the way in."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import re
import time

try:
    import requests
except ImportError:  # pragma: no cover - the client reports the missing library first
    requests = None

try:
    from urllib.parse import urljoin, urlsplit
except ImportError:  # pragma: no cover
    from urlparse import urljoin, urlsplit  # type: ignore

from ansible_collections.defender.endpoint.plugins.module_utils import files
from ansible_collections.defender.endpoint.plugins.module_utils.client import (
    DEADLINE_FACTOR,
    MAX_DOWNLOAD,
    RETRY_STATUSES,
    _UNSAFE_LINK,
    DeadlineExceeded,
    _transient,
    _transport_text,
    parse_retry_after,
)
from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEError


class _RetryDownload(Exception):
    """A download failure another attempt may not meet: carries the MDEError to raise when none is left."""

    def __init__(self, error, retry_after=None):
        super(_RetryDownload, self).__init__(str(error))
        self.error = error
        self.retry_after = retry_after


class _WriteError(Exception):
    """Writing the downloaded file failed (``error``: the OSError)."""

    def __init__(self, error):
        super(_WriteError, self).__init__(str(error))
        self.error = error


def _no_authorization(prepared):
    """requests auth hook: no Authorization header on a pre-signed download (and no ~/.netrc credentials either)."""
    prepared.headers.pop("Authorization", None)
    return prepared


MAX_REDIRECTS = 5
_QUERY = re.compile(r"\?[^\s'\"<>)]*")


def strip_query(url):
    """A URL without its query string or fragment (a SAS URL's query is its credential)."""
    return str(url).split("?", 1)[0].split("#", 1)[0]


def _hide_queries(text):
    """``text`` with the query string of every URL in it cut off (``?...``)."""
    return _QUERY.sub("?...", text)


def download(client, url, dest, what="the file", deadline=None, chunk_size=1024 * 1024, max_size=MAX_DOWNLOAD):
    """GET a pre-signed (SAS) ``url`` into the file ``dest``; return ``(dest, sha256 hex digest, size in bytes)``.

    For the links the API hands out to download a result, such as an investigation package
    (https://learn.microsoft.com/en-us/defender-endpoint/api/get-package-sas-uri) or a live response result
    (https://learn.microsoft.com/en-us/defender-endpoint/api/get-live-response-result): the link carries its
    own short-lived credential in its query string, so no bearer token (no Authorization header at all, not even
    one from ~/.netrc) is sent, and only https:// is followed, redirects included. The body is streamed through
    files.atomic_writer: ``dest`` appears whole, mode 0600, or not at all. The client's TLS settings and timeout
    apply; each attempt ends after ``deadline`` seconds (default: the session's request deadline). Dropped
    connections, timeouts, 429 and 5xx answers are tried again, as for other reads. ``what`` names the file in
    messages (``the investigation package``). Every failure is an MDEError whose text shows the URL without its
    query string (its credential). ``max_size``: the most bytes accepted (a larger answer, by its Content-Length
    or by what arrives, fails without leaving a file, and is not tried again).
    """
    shown = strip_query(url)
    if deadline is None:
        deadline = getattr(client.session, "deadline", None) or DEADLINE_FACTOR * getattr(
            client.session, "default_timeout", 30)
    attempt = 0
    while True:
        attempt += 1
        try:
            return _download_once(client, url, dest, what, shown, deadline, chunk_size, max_size)
        except _RetryDownload as e:
            if attempt >= client.max_attempts:
                raise e.error
            client._wait(attempt, e.retry_after)
        except files.UnsafeFileError as e:
            raise MDEError("Downloading %s from %s failed: %s." % (what, shown, str(e).rstrip(".")),
                           method="GET", path=urlsplit(shown).path)
        except _WriteError as e:
            raise MDEError("Downloading %s from %s failed: cannot write %s: %s." % (
                what, shown, files.where(e.error, dest), e.error.strerror or type(e.error).__name__),
                method="GET", path=urlsplit(shown).path)


def _download_once(client, url, dest, what, shown, deadline, chunk_size, max_size=None):
    """One attempt of download(). Raises MDEError, _RetryDownload, _WriteError or files.UnsafeFileError."""
    started = time.monotonic()

    def failed(text, status=None):
        return MDEError("Downloading %s from %s failed: %s." % (what, shown, text), status=status, method="GET",
                        path=urlsplit(shown).path)

    def transport(e):
        error = failed(_hide_queries(_transport_text(e, getattr(client.session, "default_timeout", None),
                                                     secrets=(url,))))
        return _RetryDownload(error) if _transient(e) else error

    target = url
    for _hop in range(MAX_REDIRECTS + 1):
        parts = urlsplit(target)
        if parts.scheme != "https" or not parts.hostname or _UNSAFE_LINK.search(target):
            raise failed("%s is not a plain https:// URL; not downloading it" % (
                "the link" if target == url else "it redirects to %s, which" % strip_query(target)))
        try:
            resp = client.session.request("GET", target, stream=True, allow_redirects=False, auth=_no_authorization,
                                          headers={"Accept": "*/*"})
        except requests.exceptions.RequestException as e:
            raise transport(e)
        if resp.status_code in (301, 302, 303, 307, 308) and resp.headers.get("Location"):
            resp.close()
            target = urljoin(target, resp.headers["Location"])
            continue
        break
    else:
        raise failed("more than %d redirects" % MAX_REDIRECTS)
    with resp:
        if resp.status_code != 200:
            error = failed("HTTP %d %s" % (resp.status_code, resp.reason or ""), status=resp.status_code)
            if resp.status_code in RETRY_STATUSES or resp.status_code == 429:
                raise _RetryDownload(error, parse_retry_after(resp.headers.get("Retry-After")))
            raise error
        too_large = failed("it is larger than the %d bytes accepted for %s; nothing was kept" % (max_size, what)) \
            if max_size is not None else None
        length = resp.headers.get("Content-Length")
        if too_large is not None and length and length.strip().isdigit() and int(length) > max_size:
            raise too_large
        digest = hashlib.sha256()
        body = resp.iter_content(chunk_size=chunk_size)
        try:
            with files.atomic_writer(dest, mode=0o600) as f:
                size = _stream(body, f, digest, started, deadline, transport, failed, max_size, too_large)
        except OSError as e:  # creating, writing, syncing or renaming the file
            raise _WriteError(e)
    return dest, digest.hexdigest(), size


def _stream(body, f, digest, started, deadline, transport, failed, max_size=None, too_large=None):
    """Copy the answer's chunks into ``f`` and ``digest``; return their size. A failure to read becomes MDEError
    or _RetryDownload (never OSError, which is the file's); more than ``max_size`` bytes raise ``too_large``."""
    size = 0
    while True:
        try:
            if time.monotonic() - started > deadline:
                raise DeadlineExceeded("the download did not end within %g seconds" % deadline)
            chunk = next(body)
        except StopIteration:
            return size
        except requests.exceptions.RequestException as e:
            raise transport(e)
        except Exception as e:  # the connection's own errors; their text may hold the URL
            raise _RetryDownload(failed("the transfer broke off (%s)" % type(e).__name__))
        size += len(chunk)
        if max_size is not None and size > max_size:
            raise too_large
        f.write(chunk)
        digest.update(chunk)
