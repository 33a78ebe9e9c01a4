"""pytest fixtures: load with ``pytest_plugins = ["tests.emulator.fixtures"]``."""

import pytest

from .emulator import Emulator


@pytest.fixture(scope="session")
def emulator_session(tmp_path_factory):
    """One running emulator (50 machines, seed 1) for the whole test session."""
    emu = Emulator(state_dir=tmp_path_factory.mktemp("mde-emulator"), machines=50, seed=1)
    emu.start()
    yield emu
    emu.stop()


@pytest.fixture
def emulator(emulator_session):  # pylint: disable=redefined-outer-name
    """The session emulator, reset to seed state with an empty log, faults and rate-limit windows cleared."""
    emulator_session.reset()
    return emulator_session
