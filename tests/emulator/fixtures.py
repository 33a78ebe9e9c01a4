"""pytest fixtures: load with ``pytest_plugins = ["tests.emulator.fixtures"]``."""

import contextlib

import pytest

from .emulator import Emulator

# A security provider's view: the home tenant (contoso, 50 machines) and three customers' tenants. fabrikam and northwind
# consented to the multi-tenant apps full and cert; adatum's admin never did (its tokens fail with AADSTS7000229).
MSP_TENANTS = ({"name": "fabrikam", "machines": 20}, {"name": "northwind", "machines": 20},
               {"name": "adatum", "machines": 5, "consent": ()})


@contextlib.contextmanager
def running(tmp_path_factory, name, **kwargs):
    """An emulator (50 machines, seed 1, and ``kwargs``) serving until the block ends."""
    emu = Emulator(state_dir=tmp_path_factory.mktemp(name), machines=50, seed=1, **kwargs)
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture(scope="session")
def emulator_session(tmp_path_factory):
    """One running emulator (50 machines, seed 1) for the whole test session."""
    with running(tmp_path_factory, "mde-emulator") as emu:
        yield emu


@pytest.fixture
def emulator(emulator_session):  # pylint: disable=redefined-outer-name
    """The session emulator, reset to seed state with an empty log, faults and rate-limit windows cleared."""
    emulator_session.reset()
    return emulator_session


@pytest.fixture(scope="session")
def msp_session(tmp_path_factory):
    """One running emulator with the MSP_TENANTS for the whole test session."""
    with running(tmp_path_factory, "mde-emulator-msp", tenants=MSP_TENANTS) as emu:
        yield emu


@pytest.fixture
def msp(msp_session):  # pylint: disable=redefined-outer-name
    """The multi-tenant emulator, every tenant reset to its seed and its first consents, with an empty log."""
    msp_session.reset()
    return msp_session
