"""The docs a user reads say what the package does: a short README, and a reference that names
every command, option and file key there is."""

from __future__ import annotations

import json
from pathlib import Path

import click

from sweeps.cli import main
from sweeps.space import ET_KEYS

ROOT = Path(__file__).parent.parent
REFERENCE = (ROOT / "docs" / "REFERENCE.md").read_text()


def test_the_readme_is_short_and_links_the_reference_and_the_architecture() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.encode()) <= 12_000
    for must in ("scripts/demo.sh", "scripts/test.sh", "docs/REFERENCE.md", "docs/ARCHITECTURE.md",
                 "def train(config: dict, report)"):
        assert must in readme, must


def test_every_command_and_option_is_in_the_reference() -> None:
    for name, command in main.commands.items():
        assert f"sweeps {name}" in REFERENCE, name
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert any(opt in REFERENCE for opt in param.opts), f"sweeps {name} {param.opts}"


def test_every_file_key_and_early_termination_type_is_in_the_reference() -> None:
    schema = json.loads((ROOT / "sweeps" / "schema.json").read_text())
    for key in schema["properties"]:
        assert f"`{key}`" in REFERENCE, key
    for kind in ET_KEYS:
        assert f"`{kind}`" in REFERENCE, kind
