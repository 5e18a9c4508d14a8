"""Verifiers: Python sandbox, SQL test-suite execution, math answer equivalence — each a `Verifier`."""

from thinktank.verifiers.base import Verdict, Verifier

__all__ = ["Verdict", "Verifier"]
