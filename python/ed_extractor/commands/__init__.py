"""Subcommands in their own modules, each with ``add_parser(commands)`` and ``run(args)``."""
