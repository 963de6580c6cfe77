"""Subcommands in modules of their own, each with ``add_parser(commands)`` and ``run(args)``."""

from __future__ import annotations

import argparse


def positive_number(text: str) -> float:
    """An argparse type: a number > 0 (seconds, requests per second)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (sources at once, a burst)."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)
