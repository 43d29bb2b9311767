from __future__ import annotations

from tests.fakes.fixtures import fake_comfy

__all__ = ["fake_comfy"]
