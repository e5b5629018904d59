"""The ``kmem`` command line: ``main`` (the parser and entry point), ``args`` (the command
table and argument types every command shares) and one module per command.

May import every layer below it (kmem.show, kmem.trace, kmem.slab, kmem.page, kmem.errors);
a command module imports its heavy dependencies inside the function that runs the command, so
that ``kmem --help`` and ``kmem CMD --help`` start at once.
"""
