"""thinktank: compose inference-time techniques over LLM endpoints, verify by execution.

from thinktank import open_engine, load_architecture, Budget
async with open_engine(["qwen2.5-coder-0.5b-instruct"]) as engine:
    arch = load_architecture("sample-8-exec", ["qwen2.5-coder-0.5b-instruct"])
    result = await arch.run(task_input, engine.context(Budget(max_tokens=8000)))
"""

from thinktank.arch import Architecture, ArchResult, build_architecture, load_architecture
from thinktank.engine import Budget, Context, Engine, ResponseCache
from thinktank.exceptions import BudgetExceeded, ThinktankError
from thinktank.runtime import open_engine
from thinktank.tasks.base import Problem, TaskInput
from thinktank.types import GenerationRequest
from thinktank.usage import Usage
from thinktank.version import __version__ as __version__  # re-exported, not in __all__ (a dunder)

__all__ = [
    "ArchResult",
    "Architecture",
    "Budget",
    "BudgetExceeded",
    "Context",
    "Engine",
    "GenerationRequest",
    "Problem",
    "ResponseCache",
    "TaskInput",
    "ThinktankError",
    "Usage",
    "build_architecture",
    "load_architecture",
    "open_engine",
]
