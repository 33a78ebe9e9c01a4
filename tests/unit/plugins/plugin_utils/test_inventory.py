"""The inventory's cache helpers: a cached result is used only for the query that made it, and only when the cache is
on and not being flushed; a result read from the API is stored whenever the cache is on."""
from ansible_collections.defender.endpoint.plugins.plugin_utils.inventory import CachedResults, query_digest


class Plugin(CachedResults):
    def __init__(self, cache_on=True):
        self.options = {"cache": cache_on}
        self._cache = {}

    def get_option(self, name):
        return self.options[name]

    @staticmethod
    def get_cache_key(path):
        return "key-of-" + path


def test_a_result_is_used_for_its_query_only():
    plugin = Plugin()
    query = query_digest({"filters": {"os_platform": ["Linux"]}, "tenant_id": "t"})
    assert plugin.get_cached_result("mde.yml", True, query) is None                 # nothing cached yet
    plugin.update_cached_result("mde.yml", query, [{"id": "m1"}])
    assert plugin._cache == {"key-of-mde.yml": {"query": query, "machines": [{"id": "m1"}]}}
    assert plugin.get_cached_result("mde.yml", True, query, list) == [{"id": "m1"}]
    other = query_digest({"filters": {"os_platform": ["Windows11"]}, "tenant_id": "t"})
    assert other != query and plugin.get_cached_result("mde.yml", True, other) is None
    assert plugin.get_cached_result("mde.yml", True, query, dict) is None           # not the kind asked for
    assert plugin.get_cached_result("other.mde.yml", True, query) is None


def test_flush_reads_again_and_stores_and_a_cache_that_is_off_is_never_touched():
    plugin = Plugin()
    plugin.update_cached_result("mde.yml", "q", {"m1": {}}, suffix="_vulnerabilities")
    assert plugin.get_cached_result("mde.yml", False, "q", suffix="_vulnerabilities") is None   # --flush-cache
    assert plugin.get_cached_result("mde.yml", True, "q", dict, suffix="_vulnerabilities") == {"m1": {}}
    assert plugin.get_cached_result("mde.yml", True, "q") is None                   # the other result of the source
    off = Plugin(cache_on=False)
    off._cache["key-of-mde.yml"] = {"query": "q", "machines": []}
    assert off.get_cached_result("mde.yml", True, "q") is None
    off.update_cached_result("mde.yml", "q2", [1])
    assert off._cache == {"key-of-mde.yml": {"query": "q", "machines": []}}


def test_a_damaged_entry_is_not_used():
    plugin = Plugin()
    for entry in ("text", {"query": "q"}, {"query": "q", "machines": "x"}, ["q", []]):
        plugin._cache["key-of-mde.yml"] = entry
        assert plugin.get_cached_result("mde.yml", True, "q") is None, entry


def test_the_digest_depends_on_every_fact_and_not_on_their_order():
    assert query_digest({"a": 1, "b": [1, 2]}) == query_digest({"b": [1, 2], "a": 1})
    assert query_digest({"a": 1}) != query_digest({"a": 2})
