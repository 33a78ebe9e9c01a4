"""``pip install ./tests/emulator``: the emulator as a package of its own, ``mde_emulator``, with the command
``mde-emulator`` (its ``__main__.main``). Inside the repository it stays ``tests.emulator`` (``python -m tests.emulator``,
``make emulator``). Dependencies: requirements.txt. Its own tests (tests/) are not installed.

A setup.py rather than a pyproject.toml on purpose: pytest makes the directory of any pyproject.toml above a test
path its rootdir, which would hide tests/conftest.py from ``pytest tests/unit tests/emulator/tests``.
"""
import os

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "requirements.txt"), encoding="utf-8") as handle:
    REQUIRES = [line.strip() for line in handle if line.strip() and not line.startswith("#")]
with open(os.path.join(HERE, "README.md"), encoding="utf-8") as handle:
    README = handle.read()

setup(
    name="mde-emulator",
    version="0.1.0",
    description="HTTPS emulator of the Microsoft Defender for Endpoint API and the Entra ID token endpoint, "
                "for offline tests and playbook development",
    long_description=README,
    long_description_content_type="text/markdown",
    license="GPL-3.0-or-later",
    python_requires=">=3.11",
    # This directory is the package (setuptools leaves this setup.py out of it).
    package_dir={"mde_emulator": "."},
    packages=["mde_emulator"],
    install_requires=REQUIRES,
    entry_points={"console_scripts": ["mde-emulator = mde_emulator.__main__:main"]},
)
