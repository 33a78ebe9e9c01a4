"""mde_advanced_hunting: the request it sends and what it returns (both APIs, one shape), with a fake client."""
from ansible_collections.defender.endpoint.plugins.module_utils.context import Context
from ansible_collections.defender.endpoint.plugins.modules import mde_advanced_hunting as module_file
from ansible_collections.defender.endpoint.tests.unit.fixtures.microsoft import sample


class FakeClient:
    def __init__(self, answer, graph_answer=None):
        self.answer = answer
        self.posts = []
        self.graph = self if graph_answer is None else FakeClient(graph_answer)

    def post(self, path, json=None, retry_safe=False, retry_timeouts=True):
        self.posts.append((path, json, retry_safe, retry_timeouts))
        return self.answer


class FakeModule(Context):
    def __init__(self, client, query, api="mde", timespan=None):
        super(FakeModule, self).__init__(dict(query=query, timeout=210, api=api, timespan=timespan))
        self._client = client


def lower(schema):
    return [{"name": c["Name"], "type": c["Type"]} for c in schema]


def test_documented_request_and_response_of_the_retiring_api_with_its_warning():
    request = sample("advanced_hunting_run_request.json")
    response = sample("advanced_hunting_run_response.json")
    client = FakeClient(response, graph_answer={})
    module = FakeModule(client, request["Query"])
    result = module_file.run(module)
    # A read: safe to repeat after a 5xx or a dropped connection, but a query that ran out of time is not
    # run again (it would spend the tenant's hunting CPU budget twice).
    assert client.posts == [("/api/advancedqueries/run", request, True, False)] and client.graph.posts == []
    assert result == dict(changed=False, schema=lower(response["Schema"]), results=response["Results"], row_count=2,
                          api="mde")
    assert len(module.warnings) == 1 and "2027-02-01" in module.warnings[0]


def test_graph_gets_query_and_timespan_and_answers_in_the_same_shape():
    response = sample("advanced_hunting_run_response.json")
    graph = {"schema": lower(response["Schema"]), "results": response["Results"]}
    client = FakeClient({}, graph_answer=graph)
    module = FakeModule(client, "DeviceInfo | take 2", api="graph", timespan="P1D")
    result = module_file.run(module)
    assert client.graph.posts == [("/v1.0/security/runHuntingQuery", {"Query": "DeviceInfo | take 2",
                                                                      "Timespan": "P1D"}, True, False)]
    assert client.posts == [] and module.warnings == []
    assert result == dict(changed=False, schema=graph["schema"], results=graph["results"], row_count=2, api="graph")


def test_a_result_at_the_row_limit_warns_that_it_is_probably_cut():
    rows = [{"DeviceId": str(i)} for i in range(100000)]
    module = FakeModule(FakeClient({}, {"schema": [{"name": "DeviceId", "type": "String"}], "results": rows}),
                        "DeviceInfo", api="graph")
    result = module_file.run(module)
    assert result["row_count"] == 100000
    assert len(module.warnings) == 1 and "100000 rows" in module.warnings[0]


def test_an_empty_result():
    module = FakeModule(FakeClient({}, {"schema": [{"name": "DeviceId", "type": "String"}], "results": []}),
                        "DeviceInfo", api="graph")
    assert module_file.run(module) == dict(changed=False, schema=[{"name": "DeviceId", "type": "String"}],
                                           results=[], row_count=0, api="graph")
