"""HTTPS emulator of the Microsoft Defender for Endpoint API and the Entra ID token endpoint (for tests, demo, benchmarks)."""

from .emulator import Emulator

__all__ = ["Emulator"]
