"""Subcommands in modules of their own, each with ``NAME``, ``add_parser(commands)``, ``run(args)``.

A module imports what only running its command needs inside ``run()``, so that building the
parser (``--version``, ``--help``) and the light commands (``probe``, ``manifest``) stay cheap.
What several commands share (exit codes, options, settings, printed outcomes) is in ``shared``.
"""
