"""mde_advanced_hunting: the request it sends and what it returns, with a fake client."""
from ansible_collections.defender.endpoint.plugins.module_utils.context import Context
from ansible_collections.defender.endpoint.plugins.modules import mde_advanced_hunting as module_file
from ansible_collections.defender.endpoint.tests.unit.fixtures.microsoft import sample


class FakeClient:
    def __init__(self, answer):
        self.answer = answer
        self.posts = []

    def post(self, path, json=None, retry_safe=False, retry_timeouts=True):
        self.posts.append((path, json, retry_safe, retry_timeouts))
        return self.answer


class FakeModule(Context):
    def __init__(self, client, query):
        super(FakeModule, self).__init__(dict(query=query, timeout=210))
        self._client = client


def test_documented_request_and_response():
    request = sample("advanced_hunting_run_request.json")
    response = sample("advanced_hunting_run_response.json")
    client = FakeClient(response)
    module = FakeModule(client, request["Query"])
    result = module_file.run(module)
    # A read: safe to repeat after a 5xx or a dropped connection, but a query that ran out of time is not
    # run again (it would spend the tenant's hunting CPU budget twice).
    assert client.posts == [("/api/advancedqueries/run", request, True, False)]
    assert result == dict(changed=False, schema=response["Schema"], results=response["Results"], row_count=2)
    assert module.warnings == []


def test_a_result_at_the_row_limit_warns_that_it_is_probably_cut():
    rows = [{"DeviceId": str(i)} for i in range(100000)]
    module = FakeModule(FakeClient({"Schema": [{"Name": "DeviceId", "Type": "String"}], "Results": rows}), "DeviceInfo")
    result = module_file.run(module)
    assert result["row_count"] == 100000
    assert len(module.warnings) == 1 and "100000 rows" in module.warnings[0]


def test_an_empty_result():
    module = FakeModule(FakeClient({"Schema": [{"Name": "DeviceId", "Type": "String"}], "Results": []}), "DeviceInfo")
    assert module_file.run(module) == dict(changed=False, schema=[{"Name": "DeviceId", "Type": "String"}],
                                           results=[], row_count=0)
