"""The project's own documentation is true: docs/architecture.md states the command line built."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from ed_extractor.cli import build_parser
from ed_extractor.commands.shared import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from ed_extractor.pipeline.spansh_dump import SourceOutcome
from ed_extractor.services.source_probe.models import ProbeResult

ROOT = Path(__file__).resolve().parent.parent
ARCHITECTURE = ROOT / "docs" / "architecture.md"
# Where prose and comments live; a reference must name something the repository contains.
SOURCES = ["python", "tests", "benches", "scripts", "rust", "deploy", "docs"]
BINARY = {".so", ".pyc"}
ELSEWHERE = re.compile(r"DESIGN\.md|\b[Ii]ssue[ #]+\d+")


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (commands,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(commands.choices)


def _contract() -> str:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    return text[text.index("## The command-line contract") :]


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_the_contract_names_every_command_and_option(command: str) -> None:
    contract = _contract()
    assert f"ed-extractor {command}" in contract
    for action in _subcommands()[command]._actions:
        for option in action.option_strings:
            if option not in {"-h", "--help"}:
                assert option in contract, f"{command} {option} is not in docs/architecture.md"


def test_the_contract_lists_the_json_keys_and_exit_codes() -> None:
    contract = _contract()
    assert ", ".join(SourceOutcome.model_fields) in contract.replace("\n  ", " ")
    assert ", ".join(ProbeResult.model_fields) in contract.replace("\n  ", " ")
    for code in (EXIT_OK, EXIT_FAILED, EXIT_USAGE):
        assert f"**{code}**" in contract


def test_nothing_cites_a_document_or_issue_the_repository_does_not_hold() -> None:
    found = []
    paths = [ROOT / "README.md", ROOT / "Makefile", ROOT / "pyproject.toml", ROOT / "Containerfile"]
    for folder in SOURCES:
        paths += [p for p in (ROOT / folder).rglob("*") if p.is_file() and p.suffix not in BINARY]
    for path in paths:
        text = path.read_text(encoding="utf-8", errors="replace")
        found += [f"{path.relative_to(ROOT)}: {m.group()}" for m in ELSEWHERE.finditer(text)]
    assert found == []
