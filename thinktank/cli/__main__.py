"""`python -m thinktank.cli`, as the console script."""

from thinktank.cli.commands import main

main()
