"""Why a model cannot be compiled, and why a compiled forest was refused."""

from __future__ import annotations


class NotCompilableError(ValueError):
    """The model is not one this module evaluates exactly; the message says why."""


class CompiledMismatchError(ValueError):
    """The compiled forest differs from scikit-learn on some rows; the message says where."""
