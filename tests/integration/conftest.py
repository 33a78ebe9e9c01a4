import pytest

from tests.integration.harness import Ansible


@pytest.fixture
def ansible(emulator, tmp_path):
    """Real ansible-playbook / ansible-inventory runs against the emulator, credentials in the environment."""
    return Ansible(emulator, tmp_path)


@pytest.fixture
def msp_ansible(msp, tmp_path):
    """The same, against the multi-tenant emulator (tests/emulator/fixtures.py MSP_TENANTS); the environment's tenant
    is the home one (contoso), as a security provider's own tenant would be."""
    return Ansible(msp, tmp_path)
