"""Verifiers: Python sandbox, SQL test-suite execution, math answer equivalence."""

from thinktank.verifiers.base import Verdict
from thinktank.verifiers.toolbox import Toolbox

__all__ = ["Toolbox", "Verdict"]
