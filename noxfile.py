"""Sessions: `nox` runs lint, typecheck and tests; `nox -s slow`, `nox -s bench` on demand.

Every session installs the workspace with uv (`uv sync`), so it tests exactly what `uv run` gives users.
"""

from __future__ import annotations

import os

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True


def _sync(session: nox.Session, *groups: str) -> None:
    """Install the workspace (all members, editable) plus dependency groups into the session's venv."""
    args = ["uv", "sync", "--frozen", "--no-default-groups", "--all-packages"]
    for group in groups:
        args += ["--group", group]
    session.run_install(*args, env={"UV_PROJECT_ENVIRONMENT": session.virtualenv.location})


@nox.session
def tests(session: nox.Session) -> None:
    """The default test run (unit, property, integration, CLI end to end); slow tests excluded."""
    _sync(session, "test")
    session.run(
        "pytest",
        *session.posargs,
        env={"HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE", "ci")},
    )


@nox.session
def slow(session: nox.Session) -> None:
    """Every test, those marked slow included, with the thorough hypothesis profile (300 examples)."""
    _sync(session, "test")
    # "-m slow" alone selected nothing (no test is marked slow today) and pytest exits 5 on that.
    env = {"HYPOTHESIS_PROFILE": "thorough"}
    session.run("pytest", "-m", "slow or not slow", *session.posargs, env=env)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy: strict on core, normal on the plugins."""
    _sync(session, "typecheck")
    session.run("mypy")


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Benchmarks against baselines measured in the same run; writes bench/results/ and docs/benchmarks.md.

    ``nox -s bench -- --quick`` for the few-minute mode, ``-- --only search`` for one workload, and
    ``-- --with-dvc`` to install DVC (into its own environment, so it cannot change the versions being
    measured) for the ``dvc add`` baseline.
    """
    _sync(session, "test")
    env: dict[str, str] = {}
    if "--with-dvc" in session.posargs:
        dvc_env = os.path.join(session.virtualenv.location, "..", "bench-dvc")
        session.run_install("uv", "venv", "--quiet", "--allow-existing", dvc_env, external=True)
        session.run_install("uv", "pip", "install", "--quiet", "--python", dvc_env, "dvc", external=True)
        env["PATH"] = os.pathsep.join([os.path.join(dvc_env, "bin"), os.environ.get("PATH", "")])
    session.run("python", "bench/run.py", *session.posargs, env=env)
