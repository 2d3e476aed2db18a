"""The docs stay true: every hook and every configuration key is documented, and every hook is exercised
by a test (datasette's meta-tests do the same for its hooks)."""

from __future__ import annotations

import re
from pathlib import Path

import attrs
import pytest

from assetry import hookspecs
from assetry.config import Config

ROOT = Path(__file__).parent.parent
HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("assetry_"))


def test_there_are_hooks() -> None:
    assert {"assetry_ingest", "assetry_index", "assetry_access", "assetry_evict"} <= set(HOOKS)


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented(hook: str) -> None:
    docs = (ROOT / "docs" / "hooks.md").read_text()
    assert re.search(rf"^### `?{hook}`?\b", docs, re.MULTILINE), f"docs/hooks.md has no '### {hook}' section"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_docstring_with_params(hook: str) -> None:
    spec = getattr(hookspecs, hook)
    assert spec.__doc__
    assert spec.__doc__.strip()
    for param in spec.__code__.co_varnames[: spec.__code__.co_argcount]:
        assert f":param {param}:" in spec.__doc__, f"{hook} does not document {param}"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_exercised_by_a_test(hook: str) -> None:
    sources = [p.read_text() for p in (ROOT / "tests").rglob("*.py") if p.name != "test_docs.py"]
    sources += [p.read_text() for p in (ROOT / "plugins").rglob("*.py")]
    assert any(f"def {hook}(" in s for s in sources), f"no plugin or test implements {hook}"


def _config_keys() -> list[str]:
    default = Config()
    keys = []
    for section in attrs.fields(Config):
        if not attrs.has(type(getattr(default, section.name))):  # (plugin tables, the source, ...)
            continue
        keys += [f"{section.name}.{f.name}" for f in attrs.fields(type(getattr(default, section.name)))]
    return keys


@pytest.mark.parametrize("key", _config_keys())
def test_every_config_key_is_documented(key: str) -> None:
    docs = (ROOT / "docs" / "config.md").read_text()
    section, name = key.split(".")
    block = re.search(rf"^## `\[{section}\]`(.*?)(?=^## |\Z)", docs, re.MULTILINE | re.DOTALL)
    assert block, f"docs/config.md has no '## `[{section}]`' section"
    assert f"`{name}`" in block.group(1), f"docs/config.md does not document {key}"


def test_the_benchmarks_page_is_rendered_from_its_sources() -> None:
    """docs/benchmarks.md is generated from bench/results/full.json and bench/notes.md: an edit to
    either (or to the page by hand) that was not rendered again would publish something else."""
    import json
    import sys

    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from report import render
    finally:
        sys.path.remove(str(ROOT / "bench"))
        for name in ("report", "common"):  # the bench's own modules, not to shadow anything later
            sys.modules.pop(name, None)
    results = json.loads((ROOT / "bench" / "results" / "full.json").read_text())
    assert render(results) == (ROOT / "docs" / "benchmarks.md").read_text(), (
        "run `uv run python bench/run.py --render-only`"
    )
