"""Subcommands of the ``kmem`` command line, one module each (see kmem.cli)."""
