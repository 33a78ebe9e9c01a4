"""Every module runs through the collection's one action plugin (meta/runtime.yml routes each module to it): by its
full name, by its short name under ``collections:``, with module defaults set for the module itself or for the group,
on the oldest and the newest ansible-core the collection claims."""
import os

import pytest
import yaml

from tests import cores
from tests.integration.harness import Ansible, ROOT


@pytest.mark.parametrize("core", sorted({cores.OLDEST, cores.NEWEST}))
def test_each_way_of_naming_a_module_runs_that_module_in_the_controller(emulator, tmp_path, core):
    ansible = Ansible(emulator, tmp_path, core=core)
    plays = [{"name": "names", "hosts": "localhost", "gather_facts": False, "collections": ["defender.endpoint"],
              "module_defaults": {"defender.endpoint.mde_machine_info": {"limit": 2},
                                  "group/defender.endpoint.mde": {"timeout": 40}},
              "tasks": [{"name": "full name", "defender.endpoint.mde_machine_info": {}},
                        {"name": "short name", "mde_machine_info": {"limit": 3}},
                        {"name": "another module", "defender.endpoint.mde_indicator_info": {"limit": 1}}]}]
    result = ansible.playbook(plays=plays)
    assert result.rc == 0, result
    assert len(result.task("full name")["machines"]) == 2        # the module's own defaults reach it
    assert len(result.task("short name")["machines"]) == 3
    assert len(result.task("another module")["indicators"]) == 1  # not mde_machine_info's defaults
    assert result.task("full name")["invocation"]["module_args"]["timeout"] == 40


def test_every_module_is_routed_to_the_one_action_plugin():
    with open(os.path.join(ROOT, "meta", "runtime.yml")) as f:
        runtime = yaml.safe_load(f)
    modules = sorted(n[:-3] for n in os.listdir(os.path.join(ROOT, "plugins", "modules")) if n.endswith(".py"))
    routing = runtime["plugin_routing"]["modules"]
    assert sorted(routing) == modules and sorted(runtime["action_groups"]["mde"]) == modules
    assert set(r["action_plugin"] for r in routing.values()) == {"defender.endpoint.mde_machine"}
    assert sorted(os.listdir(os.path.join(ROOT, "plugins", "action"))) == ["mde_machine.py"]
