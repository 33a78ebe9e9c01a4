"""The README's plugin table names every plugin the collection ships, of every type: modules, filters (each filter
name), lookups, the inventory plugin, event sources, rulebooks, roles and playbooks."""
import ast
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def names(folder, ext=".py"):
    path = os.path.join(ROOT, folder)
    return sorted(n[:-len(ext)] if ext else n for n in os.listdir(path)
                  if (n.endswith(ext) if ext else os.path.isdir(os.path.join(path, n))) and not n.startswith("_"))


def filter_names():
    """The names each filter plugin file registers (its FilterModule.filters() dictionary)."""
    found = []
    for name in names("plugins/filter"):
        tree = ast.parse(open(os.path.join(ROOT, "plugins", "filter", name + ".py"), encoding="utf-8").read())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name == "filters":
                returned = [n for n in ast.walk(node) if isinstance(n, ast.Return)][0].value
                found += [k.value for k in returned.keys]
    return found


def test_the_readme_table_names_every_plugin():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    table = "\n".join(line for line in text.split("\n## ", 1)[0].splitlines() if line.startswith("|"))
    shown = set(re.findall(r"`([a-z0-9_]+)`", table))
    expected = {
        "module": names("plugins/modules"),
        "filter": filter_names(),
        "lookup": names("plugins/lookup"),
        "inventory": names("plugins/inventory"),
        "event source": names("extensions/eda/plugins/event_source"),
        "rulebook": names("extensions/eda/rulebooks", ".yml"),
        "role": names("roles", None),
        "playbook": names("playbooks", ".yml"),
    }
    missing = dict((kind, [n for n in found if n not in shown]) for kind, found in expected.items())
    assert not any(missing.values()), missing
    assert all(expected.values())
