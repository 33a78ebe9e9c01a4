# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The inventory plugin's use of Ansible's inventory cache, in one place.

A cached entry is ``{"query": <digest of the options that selected it>, "machines": <what was read>}``: an entry made
with other filters, another tenant or another API is not used, and no credential is ever stored. Only public plugin
interfaces (``get_option``, ``get_cache_key`` and the ``_cache`` that Cacheable gives every inventory plugin), so every
claimed ansible-core behaves alike.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json


def query_digest(facts):
    """A digest of what selected a result (a dict of JSON-able values): the cache entry's ``query``."""
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode("utf-8")).hexdigest()


class CachedResults:
    """For a Cacheable inventory plugin: ``get_cached_result`` and ``update_cached_result``, keyed by the inventory
    source's path (and a ``suffix`` for a second result of the same source)."""

    def get_cached_result(self, path, cache, query, kind=(list, dict), suffix=""):
        """The result cached for ``path`` + ``suffix`` when the cache option is on, ``cache`` is true (false with
        ``--flush-cache`` or ``refresh_inventory``), the entry was made for ``query`` and holds a ``kind``; else None.
        """
        if not cache or not self.get_option("cache"):
            return None
        try:
            cached = self._cache[self.get_cache_key(path) + suffix]
        except KeyError:  # expired, or never written
            return None
        if isinstance(cached, dict) and cached.get("query") == query and isinstance(cached.get("machines"), kind):
            return cached["machines"]
        return None

    def update_cached_result(self, path, query, result, suffix=""):
        """Store ``result`` (read from the API) for ``path`` + ``suffix`` and ``query`` when the cache option is on."""
        if self.get_option("cache"):
            self._cache[self.get_cache_key(path) + suffix] = {"query": query, "machines": result}
