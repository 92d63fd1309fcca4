"""What the model package's tests share: a serving install simulated in this one."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import pytest


@pytest.fixture
def not_installed(monkeypatch) -> Callable[..., None]:
    """Make packages look absent, as in the serving install (`importlib.util.find_spec` answers
    None for them, which is how the package asks)."""
    find_spec = importlib.util.find_spec
    absent: set[str] = set()

    def fake(name, package=None):
        return None if name.split(".")[0] in absent else find_spec(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", fake)
    return lambda *names: absent.update(names)
