"""The `thinktank` command line: a thin synchronous shell over the async core, one module per command group.

`app` holds the commands, `main` is the console script (`thinktank = "thinktank.cli:main"`).
"""

from thinktank.cli.commands import app, main
from thinktank.cli.common import run_async

__all__ = ["app", "main", "run_async"]
