import pytest

from tests.integration.harness import Ansible


@pytest.fixture
def ansible(emulator, tmp_path):
    """Real ansible-playbook / ansible-inventory runs against the emulator, credentials in the environment."""
    return Ansible(emulator, tmp_path)
