"""Shared pytest set-up: the collection importable by its full path, and the emulator fixtures."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Unit tests import the live source as ansible_collections.defender.endpoint, through a symlink.
_SRC = os.path.join(ROOT, ".build", "src")
_LINK = os.path.join(_SRC, "ansible_collections", "defender", "endpoint")
if not os.path.islink(_LINK):
    os.makedirs(os.path.dirname(_LINK), exist_ok=True)
    try:
        os.symlink(ROOT, _LINK)
    except FileExistsError:  # another pytest worker made it first
        pass
if _SRC not in sys.path:
    sys.path.insert(0, _SRC)

pytest_plugins = ["tests.emulator.fixtures"]
