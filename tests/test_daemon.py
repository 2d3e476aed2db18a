"""The command daemon, end to end: a real daemon process started with `assetry daemon start`, real
`assetry` commands as subprocesses (their stdin, stdout and stderr passed through the socket), and the
same commands run in-process (``ASSETRY_DAEMON=0``) to compare with."""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import assetry as assetry_api
from assetry import _launch
from assetry.daemon import CodeFingerprint

pytestmark = pytest.mark.skipif(not _launch.supported(), reason="the daemon needs Unix sockets")


def assetry(
    env: dict[str, str], *args: str, cwd: Path, input: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "assetry", *args],
        cwd=cwd,
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def status(env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """What `assetry daemon status --json` prints, asked directly (polling it through a subprocess
    each time would make these tests slow)."""
    path = _socket(env)
    reply = _launch.ask({"op": "status"}, path)
    return {"running": True, **reply} if reply else {"running": False, "socket": path}


@functools.cache
def _socket_of(items: frozenset[tuple[str, str]]) -> str:
    out = subprocess.run(
        [sys.executable, "-c", "from assetry import _launch; print(_launch.socket_path())"],
        env=dict(items),
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def _socket(env: dict[str, str]) -> str:
    """The socket a command run with ``env`` looks for (computed by such a command: it depends on the
    interpreter's import path, which differs in this test process)."""
    return _socket_of(frozenset(env.items()))


def wait_for(condition: Any, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def env() -> Iterator[dict[str, str]]:
    """The environment of a user's shell, with a private daemon directory (short: socket paths are
    limited to ~100 bytes, pytest's tmp paths can be longer)."""
    directory = tempfile.mkdtemp(prefix="assetry-d")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ASSETRY_")}
    environment[_launch.DIR_ENV] = directory
    yield environment
    for leftover in Path(directory).glob("*.sock"):  # a daemon a failed test did not stop
        _launch.ask({"op": "stop"}, str(leftover))
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def daemon(env: dict[str, str], tmp_path: Path) -> Iterator[dict[str, str]]:
    started = assetry(env, "daemon", "start", "--idle", "300", cwd=tmp_path)
    assert "Started the assetry daemon" in started.stdout
    pid = status(env, tmp_path)["pid"]
    yield env
    assetry(env, "daemon", "stop", cwd=tmp_path, check=False)
    wait_for(lambda: not _alive(pid), "the daemon to exit")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is not alive: its parent (pytest, or init) has just not reaped it yet.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"))


def in_process(env: dict[str, str]) -> dict[str, str]:
    return {**env, _launch.DAEMON_ENV: "0"}


def empty_store(root: Path) -> None:
    """Create an empty store for commands that only read (they refuse a root with no store)."""
    assetry_api.open(root=root).close()


def test_commands_run_in_the_daemon_with_the_callers_directory_and_output(
    daemon: dict[str, str], tmp_path: Path
) -> None:
    project = tmp_path / "project"
    (project / "renders").mkdir(parents=True)
    for i in range(3):
        (project / "renders" / f"frame{i}.txt").write_text(f"frame {i}")
    assetry(daemon, "init", "--dimension", "4", cwd=project)
    added = json.loads(assetry(daemon, "add", "renders", "--tag", "daemon", "--json", cwd=project).stdout)[
        "assets"
    ]
    listed = json.loads(assetry(daemon, "ls", "--json", cwd=project).stdout)

    # assetry.toml was found in the caller's directory, and the store is where it says.
    assert (project / "assetry.toml").is_file()
    assert (project / ".assetry").is_dir()
    assert sorted(a["label"] for a in added) == ["frame0.txt", "frame1.txt", "frame2.txt"]
    assert {a["id"] for a in listed["items"]} == {a["id"] for a in added}
    assert all(a["tags"] == ["daemon"] for a in listed["items"])
    # The same store read in-process shows what the daemon's children wrote.
    here = json.loads(assetry(in_process(daemon), "ls", "--json", cwd=project).stdout)
    assert here["items"] == listed["items"]
    assert status(daemon, tmp_path)["served"] >= 3


def test_errors_and_exit_statuses_are_the_same_as_in_process(daemon: dict[str, str], tmp_path: Path) -> None:
    before = status(daemon, tmp_path)["served"]
    cases = [
        ("--root", "store", "show", "0123456789abcdef"),  # assetry's own error: status 1
        ("--root", "store", "add", "missing.png"),  # a bad input: nothing written
        ("--root", "store", "ls", "--order", "sideways"),  # a usage error: click's status 2
        ("--root", "store", "nonsense"),
    ]
    for args in cases:
        served = assetry(daemon, *args, cwd=tmp_path, check=False)
        local = assetry(in_process(daemon), *args, cwd=tmp_path, check=False)
        assert served.returncode == local.returncode != 0, args
        assert served.stdout == local.stdout, args
        assert served.stderr == local.stderr, args
    assert status(daemon, tmp_path)["served"] == before + len(cases)
    assert not (tmp_path / "store" / "blobs").exists() or not any((tmp_path / "store" / "blobs").rglob("*"))


def test_a_closed_standard_descriptor_stays_closed_for_the_command(
    daemon: dict[str, str], tmp_path: Path
) -> None:
    def closed_stdout() -> None:
        os.close(1)

    before = status(daemon, tmp_path)["served"]
    outcomes = []
    for env in (daemon, in_process(daemon)):
        result = subprocess.run(
            [sys.executable, "-m", "assetry", "--root", "store", "ls"],
            cwd=tmp_path,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
            preexec_fn=closed_stdout,  # the shell's `>&-`, in the child before exec
        )
        outcomes.append((result.returncode, result.stderr))
    assert outcomes[0] == outcomes[1]
    assert status(daemon, tmp_path)["served"] == before + 1


def test_stdin_reaches_the_command(daemon: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("keep or delete")
    asset = json.loads(assetry(daemon, "--root", "s", "add", "a.txt", "--json", cwd=tmp_path).stdout)[
        "assets"
    ][0]
    kept = assetry(daemon, "--root", "s", "rm", asset["id"], cwd=tmp_path, input="n\n", check=False)
    assert kept.returncode == 1
    assert "Aborted" in kept.stderr
    assetry(daemon, "--root", "s", "rm", asset["id"], cwd=tmp_path, input="y\n")
    listed = json.loads(assetry(daemon, "--root", "s", "ls", "--json", cwd=tmp_path).stdout)
    assert listed["items"] == []


def test_the_callers_environment_configures_the_command(daemon: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("configured by the environment")
    configured = {**daemon, "ASSETRY_STORE__ROOT": str(tmp_path / "from-env"), "ASSETRY_STORE__TENANT": "t1"}
    added = json.loads(assetry(configured, "add", "a.txt", "--json", cwd=tmp_path).stdout)["assets"]
    assert added[0]["tenant"] == "t1"
    assert (tmp_path / "from-env").is_dir()


def _rm_at_its_prompt(daemon: dict[str, str], tmp_path: Path) -> tuple[subprocess.Popen[str], str]:
    """An `assetry rm` waiting at its confirmation prompt (on stdin, which nobody writes to), and the id
    of the asset it would delete."""
    (tmp_path / "a.txt").write_text("asked about")
    added = json.loads(assetry(daemon, "--root", "s", "add", "a.txt", "--json", cwd=tmp_path).stdout)
    asset_id = added["assets"][0]["id"]
    client = subprocess.Popen(
        [sys.executable, "-m", "assetry", "--root", "s", "rm", asset_id],
        cwd=tmp_path,
        env=daemon,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert client.stderr is not None
    prompt = ""
    while "[y/N]" not in prompt:  # the command is at its prompt (a signal must not come earlier)
        chunk = os.read(client.stderr.fileno(), 1024)
        assert chunk, f"the command ended before its prompt: {prompt}"
        prompt += chunk.decode()
    assert status(daemon, tmp_path)["commands_running"] == 1
    return client, asset_id


@pytest.mark.parametrize(
    ("signum", "expected"),
    [(signal.SIGINT, 1), (signal.SIGTERM, -signal.SIGTERM)],
    ids=["ctrl-c", "terminate"],
)
def test_signals_reach_the_command(
    daemon: dict[str, str], tmp_path: Path, signum: signal.Signals, expected: int
) -> None:
    client, asset_id = _rm_at_its_prompt(daemon, tmp_path)
    client.send_signal(signum)
    # stdin stays open until the command ended: `communicate()` would close it at once, and a prompt that
    # reads the end of its input aborts (exit 1) before a slow machine's client has passed SIGTERM on.
    # stdout and stderr are still drained meanwhile, so a command writing much cannot block on them.
    stdin, client.stdin = client.stdin, None
    _, stderr = client.communicate(timeout=60)
    assert stdin is not None
    stdin.close()
    assert client.returncode == expected, stderr
    if signum == signal.SIGINT:
        assert "Aborted" in stderr  # click's answer to Ctrl-C at a prompt
    assert status(daemon, tmp_path)["commands_running"] == 0
    listed = json.loads(assetry(daemon, "--root", "s", "ls", "--json", cwd=tmp_path).stdout)
    assert [a["id"] for a in listed["items"]] == [asset_id]


@pytest.fixture
def stand_in_daemon(env: dict[str, str]) -> Iterator[socket.socket]:
    """A listening socket where the client looks for its daemon. It stands in for the daemon where a
    test needs to hold open the moment between a command being sent and the answer naming its child:
    the real daemon answers too fast to aim a signal into it (under load the child's prompt could
    appear first, and a Ctrl-C then ended the client alone)."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(_socket(env))
    server.listen(1)
    yield server
    server.close()


def _client_holding_a_signal(
    env: dict[str, str], tmp_path: Path, server: socket.socket
) -> tuple[subprocess.Popen[str], socket.socket]:
    """A client that has sent its command, and been sent SIGTERM before any answer."""
    from assetry import daemon as daemon_module

    client = subprocess.Popen(
        [sys.executable, "-m", "assetry", "stats"], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True
    )
    conn, _ = server.accept()
    request, fds = daemon_module._receive(conn)  # sent after the client set its signal handlers
    for fd in fds:
        os.close(fd)
    assert request["argv"][-1] == "stats"
    client.send_signal(signal.SIGTERM)
    time.sleep(0.2)  # the client takes the signal before it learns which child to pass it to
    assert client.poll() is None, "the client died of the signal instead of holding it"
    return client, conn


def test_a_signal_before_the_daemon_names_the_child_still_reaches_it(
    env: dict[str, str], tmp_path: Path, stand_in_daemon: socket.socket
) -> None:
    stand_in_child = subprocess.Popen(["sleep", "60"])
    client, conn = _client_holding_a_signal(env, tmp_path, stand_in_daemon)
    try:
        conn.sendall(json.dumps({"pid": stand_in_child.pid}).encode() + b"\n")
        assert stand_in_child.wait(timeout=30) == -signal.SIGTERM
        conn.sendall(json.dumps({"signal": signal.SIGTERM}).encode() + b"\n")
        client.communicate(timeout=30)
        assert client.returncode == -signal.SIGTERM
    finally:
        for process in (stand_in_child, client):
            process.kill()
            process.wait()


def test_a_signal_held_for_a_daemon_that_refuses_is_the_clients_again(
    env: dict[str, str], tmp_path: Path, stand_in_daemon: socket.socket
) -> None:
    client, conn = _client_holding_a_signal(env, tmp_path, stand_in_daemon)
    try:
        conn.sendall(json.dumps({"refused": "other code"}).encode() + b"\n")
        _, stderr = client.communicate(timeout=30)
        assert client.returncode == -signal.SIGTERM, stderr  # not the command run in-process instead
    finally:
        client.kill()
        client.wait()


def test_a_killed_client_takes_its_command_with_it(daemon: dict[str, str], tmp_path: Path) -> None:
    client, _ = _rm_at_its_prompt(daemon, tmp_path)
    client.kill()
    client.wait(timeout=30)
    # The prompt's stdin stays open here (closing it would end the prompt): only the daemon ends it.
    wait_for(lambda: status(daemon, tmp_path)["commands_running"] == 0, "the orphaned command to end")
    for pipe in (client.stdin, client.stdout, client.stderr):
        assert pipe is not None
        pipe.close()


def test_no_daemon_when_disabled_or_stopped(daemon: dict[str, str], tmp_path: Path) -> None:
    shown = json.loads(assetry(daemon, "daemon", "status", "--json", cwd=tmp_path).stdout)
    assert shown == status(daemon, tmp_path)
    assert "The assetry daemon is running" in assetry(daemon, "daemon", "status", cwd=tmp_path).stdout
    before = shown["served"]
    empty_store(tmp_path / "s")
    assetry(in_process(daemon), "--root", "s", "stats", cwd=tmp_path)
    assert status(daemon, tmp_path)["served"] == before

    assert "Stopping" in assetry(daemon, "daemon", "stop", cwd=tmp_path).stdout
    wait_for(lambda: not status(daemon, tmp_path)["running"], "the daemon to stop")
    assert assetry(daemon, "daemon", "status", cwd=tmp_path, check=False).returncode == 3
    # Commands still work, in-process.
    assert (
        json.loads(assetry(daemon, "--root", "s", "stats", "--json", cwd=tmp_path).stdout)["usage"]["assets"]
        == 0
    )


def test_auto_mode_starts_a_daemon_for_the_next_commands(env: dict[str, str], tmp_path: Path) -> None:
    auto = {**env, _launch.DAEMON_ENV: "auto"}
    assert not status(auto, tmp_path)["running"]
    empty_store(tmp_path / "s")
    first = json.loads(assetry(auto, "--root", "s", "stats", "--json", cwd=tmp_path).stdout)  # in-process
    assert first["usage"]["assets"] == 0
    wait_for(lambda: status(auto, tmp_path)["running"], "the daemon the first command started", seconds=60)
    assert json.loads(assetry(auto, "--root", "s", "stats", "--json", cwd=tmp_path).stdout) == first
    assert status(auto, tmp_path)["served"] == 1


def test_starting_twice_keeps_one_daemon(daemon: dict[str, str], tmp_path: Path) -> None:
    pid = status(daemon, tmp_path)["pid"]
    again = assetry(daemon, "daemon", "start", cwd=tmp_path)
    assert f"already running (pid {pid})" in again.stdout


def test_two_daemons_started_at_once_leave_one(env: dict[str, str], tmp_path: Path) -> None:
    path = _socket(env)
    both = [
        subprocess.Popen(
            [sys.executable, "-m", "assetry.daemon", "--socket", path, "--idle", "300"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    wait_for(lambda: any(p.poll() is not None for p in both), "one of them to give up", seconds=60)
    loser = next(p for p in both if p.poll() is not None)
    winner = next(p for p in both if p is not loser)
    assert "already running" in loser.communicate()[1]
    wait_for(lambda: status(env, tmp_path)["running"], "the other to serve", seconds=60)
    assert status(env, tmp_path)["pid"] == winner.pid
    _launch.ask({"op": "stop"}, path)
    winner.communicate(timeout=60)


def test_installing_code_stops_the_daemon(env: dict[str, str], tmp_path: Path) -> None:
    """A directory on the import path that changes (a distribution installed into it) means the daemon
    runs old code: it refuses the command, which then runs in-process, and stops."""
    extra = tmp_path / "site"
    extra.mkdir()
    with_path = {**env, "PYTHONPATH": str(extra)}
    assetry(with_path, "daemon", "start", "--idle", "300", cwd=tmp_path)
    empty_store(tmp_path / "s")
    assetry(with_path, "--root", "s", "stats", cwd=tmp_path)
    assert status(with_path, tmp_path)["served"] == 1
    (extra / "newly_installed.py").write_text("")
    assert (
        json.loads(assetry(with_path, "--root", "s", "stats", "--json", cwd=tmp_path).stdout)["usage"][
            "assets"
        ]
        == 0
    )
    wait_for(lambda: not status(with_path, tmp_path)["running"], "the daemon to stop")


def test_another_environment_gets_another_daemon(daemon: dict[str, str], tmp_path: Path) -> None:
    """Variables read at import time are part of the socket's name: a shell that sets one does not use
    a daemon started without it."""
    other = {**daemon, "OMP_NUM_THREADS": "1"}
    assert _socket(other) != _socket(daemon)
    assert status(other, tmp_path)["running"] is False
    assert status(daemon, tmp_path)["running"] is True


def test_idle_daemon_stops(env: dict[str, str], tmp_path: Path) -> None:
    assetry(env, "daemon", "start", "--idle", "1", cwd=tmp_path)
    wait_for(lambda: not status(env, tmp_path)["running"], "the idle daemon to stop")
    assert not Path(status(env, tmp_path)["socket"]).exists()


def test_a_directory_others_can_write_is_never_used(env: dict[str, str], tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)  # (the umask applied to mkdir)
    unsafe = {**env, _launch.DIR_ENV: str(shared)}
    refused = assetry(unsafe, "daemon", "start", cwd=tmp_path, check=False)
    assert refused.returncode == 1
    assert "only you can use" in refused.stderr
    assert list(shared.iterdir()) == []


def test_a_file_where_the_daemon_directory_goes_is_an_error_not_a_traceback(
    env: dict[str, str], tmp_path: Path
) -> None:
    a_file = tmp_path / "not-a-directory"
    a_file.write_text("x")
    for directory in (a_file, a_file / "below"):
        where = {**env, _launch.DIR_ENV: str(directory)}
        refused = assetry(where, "daemon", "start", cwd=tmp_path, check=False)
        assert refused.returncode == 1
        assert f"{directory} must be a directory only you can use" in refused.stderr
        assert "Traceback" not in refused.stderr


def test_protocol_mismatch_is_refused(
    daemon: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(_launch.DIR_ENV, daemon[_launch.DIR_ENV])
    path = status(daemon, tmp_path)["socket"]
    reply = _launch.ask({"op": "run", "protocol": _launch.PROTOCOL + 1}, path)
    assert reply is not None
    assert "protocol" in reply["refused"]


def test_the_launcher_imports_no_store() -> None:
    """What keeps a command served by the daemon fast: the entry point's own imports."""
    code = (
        "import sys, assetry._launch;"
        "print(sorted(m for m in sys.modules if m.startswith(('assetry', 'lancedb', 'click'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['assetry', 'assetry._launch']"


def test_public_names_resolve_lazily() -> None:
    import assetry

    for name in assetry.__all__:
        assert getattr(assetry, name) is not None, name
    assert assetry.open is assetry.store.open
    with pytest.raises(AttributeError, match="no_such_name"):
        assetry.no_such_name  # noqa: B018


def test_fingerprint_sees_a_changed_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = tmp_path / "generated_plugin.py"
    module.write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    __import__("generated_plugin")
    try:
        fingerprint = CodeFingerprint()
        assert fingerprint.changed() is None
        stat = module.stat()
        os.utime(module, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        assert fingerprint.changed() == str(module)
    finally:
        sys.modules.pop("generated_plugin", None)
