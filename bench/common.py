"""What the benchmarks share: the repo paths and an environment that points Ansible at an emulator."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
BIN = os.path.join(ROOT, ".venv", "bin")


def collections_path():
    """The live source, linked as tests/conftest.py does, unless MDE_TEST_COLLECTIONS names another path."""
    given = os.environ.get("MDE_TEST_COLLECTIONS")
    if given:
        return given
    src = os.path.join(ROOT, ".build", "src")
    link = os.path.join(src, "ansible_collections", "defender", "endpoint")
    if not os.path.islink(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(ROOT, link)
    return src


def ansible_env(emulator, cache_dir, app="full", **extra):
    """Credentials only in MDE_* variables, as AWX injects them."""
    creds = emulator.apps[app]
    env = dict((k, v) for k, v in os.environ.items() if not k.startswith(("MDE_", "AZURE_")))
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": collections_path(),
        "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false",
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_HOST_KEY_CHECKING": "false",
        "ANSIBLE_PYTHON_INTERPRETER": os.path.join(BIN, "python"),
        "PATH": BIN + os.pathsep + env.get("PATH", ""),
        "MDE_TENANT_ID": emulator.tenant_id,
        "MDE_CLIENT_ID": creds["client_id"],
        "MDE_CLIENT_SECRET": creds["client_secret"],
        "MDE_API_URL": emulator.url,
        "MDE_AUTHORITY_HOST": emulator.url,
        "MDE_CA_PATH": emulator.ca_path,
        "MDE_TOKEN_CACHE_DIR": cache_dir,
    })
    env.update(dict((k, str(v)) for k, v in extra.items()))
    return env
