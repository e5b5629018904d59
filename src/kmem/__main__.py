"""``python -m kmem``: the same as the ``kmem`` command."""

import sys

from kmem.cli.main import command

sys.exit(command())
