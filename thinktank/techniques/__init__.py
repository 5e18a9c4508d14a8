"""Techniques: one `apply(ctx, task_input, candidates)` contract each; see docs/techniques.md."""

from thinktank.techniques.base import Candidate, Technique

__all__ = ["Candidate", "Technique"]
