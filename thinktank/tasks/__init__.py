"""Tasks: problems split into what a technique may see and hidden grading checks."""

from thinktank.tasks.base import HiddenChecks, Problem, Task, TaskInput
from thinktank.tasks.registry import get_task, task_names

__all__ = ["HiddenChecks", "Problem", "Task", "TaskInput", "get_task", "task_names"]
