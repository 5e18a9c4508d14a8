"""Evaluation: run an architecture over a task, grade on hidden checks, store, report."""

from thinktank.eval.runner import run_eval, summarize
from thinktank.eval.store import RunStore

__all__ = ["RunStore", "run_eval", "summarize"]
