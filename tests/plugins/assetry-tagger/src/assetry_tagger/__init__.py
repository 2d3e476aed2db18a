"""Tags every asset with its size class and adds a CLI command."""

from __future__ import annotations

from typing import Any

import click

from assetry import hookimpl


@hookimpl
def assetry_ingest(content: Any) -> dict[str, Any]:
    size_class = "small" if content.size < 1024 else "large"
    return {"tags": ["tagged-by-tagger", size_class], "extra": {"tagger": {"version": 1}}}


@hookimpl
def assetry_cli_commands(cli: click.Group) -> None:
    @cli.command(name="tagger-hello")
    def hello() -> None:
        """Say hello from the tagger plugin."""
        click.echo("hello from assetry-tagger")
