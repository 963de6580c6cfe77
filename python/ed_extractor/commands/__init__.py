"""Subcommands in modules of their own, each with ``add_parser(commands)`` and ``run(args)``."""
