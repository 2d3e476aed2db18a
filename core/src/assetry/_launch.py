"""The ``assetry`` command's entry point: hand the command to a running daemon, or run it here.

Importing LanceDB and the store's modules takes over a second, which every ``assetry`` command paid
before doing any work. A daemon (`assetry.daemon`, started with ``assetry daemon start``) imports them
once and forks a child per command. This module is what runs first, so it imports only the standard
library: it connects to the daemon's socket and passes it the command line, the working directory, the
environment and its own stdin, stdout and stderr (the file descriptors themselves), so the child reads
and writes the same terminal or pipes this process would. It forwards Ctrl-C and termination to the
child and exits with the child's status. With no daemon (or one that refuses: other code or other
settings), the command runs in this process, exactly as before.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any

PROTOCOL = 1
"""Bumped when the request or reply format changes (a daemon refuses other versions)."""

DAEMON_ENV = "ASSETRY_DAEMON"
"""``0`` (or ``off``, ``no``, ``false``): commands never go to a daemon. ``auto``: a command that finds
no daemon starts one in the background (and runs in-process itself), so the next commands are fast."""

DIR_ENV = "ASSETRY_DAEMON_DIR"
"""Where the daemon's socket and log live (default: ``$XDG_RUNTIME_DIR/assetry``, else a per-user
directory in ``/tmp``)."""

IMPORT_TIME_ENV = (
    *("PYTHON", "LD_", "LANG", "LC_"),  # the interpreter's start-up: import path, libraries, locale
    *("LANCE", "ARROW", "PYARROW", "FSSPEC", "OMP_", "OPENBLAS_", "MKL_", "RUST_"),
)
"""Variables read when the interpreter starts or modules are imported: a daemon started under other values
would not behave as this process would, so they are part of the socket's name."""

_FORWARDED_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT")
MAX_SOCKET_PATH = 100  # sun_path holds 104 to 108 bytes depending on the system


def supported() -> bool:
    return os.name == "posix" and hasattr(socket, "AF_UNIX") and hasattr(socket, "send_fds")


def _mode() -> str:
    return os.environ.get(DAEMON_ENV, "").strip().lower()


def disabled() -> bool:
    return _mode() in ("0", "off", "no", "false")


def log_path(path: str) -> str:
    """The daemon's log, beside its socket: ``<name>.log``."""
    return path.removesuffix(".sock") + ".log"


def spawn(path: str, idle: float) -> Any:
    """Start a daemon for ``path`` in the background, its output appended to `log_path`; returns the
    `subprocess.Popen` (the caller may wait for the socket, or not)."""
    import subprocess

    with open(log_path(path), "ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "assetry.daemon", "--socket", path, "--idle", str(idle)],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,  # not stopped with the terminal's process group
            cwd="/",
        )


def daemon_dir() -> str:
    chosen = os.environ.get(DIR_ENV)
    if chosen:
        return os.path.abspath(chosen)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return os.path.join(runtime, "assetry")
    return os.path.join(os.environ.get("TMPDIR") or "/tmp", f"assetry-{os.getuid()}")


def socket_path() -> str:
    """The socket of the daemon that serves this interpreter, environment and installed code."""
    import hashlib

    imported = sorted((k, v) for k, v in os.environ.items() if k.startswith(IMPORT_TIME_ENV))
    # sys.path[0] is the script's directory or the working directory: not what decides the code.
    identity = json.dumps([sys.executable, sys.prefix, sys.path[1:], list(sys.flags), imported])
    key = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return os.path.join(daemon_dir(), f"{key}.sock")


def private_dir(path: str, *, create: bool) -> bool:
    """True if ``path`` is a directory only this user can use (created so if asked). Another user's
    directory, or one others may write to, is never used: its socket could be anybody's."""
    try:
        if create:
            os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.lstat(path)
    except (FileNotFoundError, FileExistsError, NotADirectoryError):  # (a file where a directory goes)
        return False
    import stat

    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077


def connect(path: str, timeout: float | None = 5.0) -> socket.socket | None:
    """A connection to the daemon at ``path``, or None if none is listening there."""
    if len(path.encode()) > MAX_SOCKET_PATH or not private_dir(os.path.dirname(path), create=False):
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if sock.fileno() <= 2:
        # A standard descriptor was closed (`assetry ls >&-`) and the socket took its number: move it
        # up, so that the command runs with that descriptor closed, as it would in this process.
        import fcntl

        moved = fcntl.fcntl(sock.fileno(), fcntl.F_DUPFD_CLOEXEC, 3)
        sock.close()
        sock = socket.socket(fileno=moved)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    return sock


def send_message(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    body = json.dumps(message).encode()
    header = struct.pack("!I", len(body))
    if fds:
        socket.send_fds(sock, [header], fds)
    else:
        sock.sendall(header)
    sock.sendall(body)


def read_reply(reader: Any) -> dict[str, Any] | None:
    """One reply line, or None when the daemon closed the connection."""
    line = reader.readline()
    if not line:
        return None
    reply: dict[str, Any] = json.loads(line)
    return reply


def ask(message: dict[str, Any], path: str | None = None) -> dict[str, Any] | None:
    """Send a control request (``status``, ``stop``) and return the reply, or None with no daemon."""
    sock = connect(path or socket_path())
    if sock is None:
        return None
    with sock, sock.makefile("rb") as reader:
        try:
            send_message(sock, {"protocol": PROTOCOL, **message})
            return read_reply(reader)
        except OSError:
            return None


def _open_std_fds() -> list[int]:
    open_fds = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            continue
        open_fds.append(fd)
    return open_fds


def _stream_settings() -> list[list[str | None]]:
    return [
        [getattr(stream, "encoding", None), getattr(stream, "errors", None)]
        for stream in (sys.stdin, sys.stdout, sys.stderr)
    ]


def run_in_daemon(argv: list[str]) -> int | None:
    """Run the command in a daemon's child: its exit status, or None if no daemon took it (nothing ran).

    A child that was started but whose daemon went away reports status 1 (the command may have run
    partly; running it again here could do it twice)."""
    sock = connect(socket_path())
    if sock is None:
        return None
    with sock, sock.makefile("rb") as reader:
        try:
            cwd = os.getcwd()
        except OSError:
            return None  # a removed working directory: let the command report it in-process
        umask = os.umask(0o022)
        os.umask(umask)
        fds = _open_std_fds()
        request = {
            "protocol": PROTOCOL,
            "op": "run",
            "argv": argv,
            "cwd": cwd,
            "env": dict(os.environ),
            "umask": umask,
            "path0": sys.path[0],
            "fds": fds,
            "streams": _stream_settings(),
        }
        # Signals are caught from before the request is sent: the child may print (a prompt, say)
        # before the reply naming it reaches this process, and a Ctrl-C meanwhile must reach the child
        # too, not end this process alone and leave the command running without its terminal.
        child: list[int] = []
        pending: list[int] = []

        def forward(signum: int, _frame: object) -> None:
            if not child:
                pending.append(signum)
                return
            with contextlib.suppress(ProcessLookupError):
                os.kill(child[0], signum)

        previous = {name: signal.signal(getattr(signal, name), forward) for name in _FORWARDED_SIGNALS}
        try:
            send_message(sock, request, fds)
            accepted = read_reply(reader)
        except (OSError, ValueError):
            accepted = None
        if not accepted or "pid" not in accepted:
            # Refused (other code, other protocol) or gone: the command runs here instead, and a signal
            # caught meanwhile is this process's again.
            for name, handler in previous.items():
                signal.signal(getattr(signal, name), signal.SIG_DFL if handler is None else handler)
            for signum in pending:
                os.kill(os.getpid(), signum)
            return None
        child.append(int(accepted["pid"]))
        for signum in pending:
            forward(signum, None)
        sock.settimeout(None)  # the command takes as long as it takes
        try:
            outcome = read_reply(reader)
        except (OSError, ValueError):
            outcome = None
    if outcome is None:
        print("assetry: the daemon stopped before the command finished", file=sys.stderr)
        return 1
    if "signal" in outcome:
        # Die of the same signal, so a shell sees what it would have seen (Ctrl-C stops a loop).
        signum = int(outcome["signal"])
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return 128 + signum
    return int(outcome["exit"])


AUTO_IDLE_SECONDS = 1800


def _start_for_next_time() -> None:
    """``ASSETRY_DAEMON=auto`` and no daemon: start one without waiting for it. Two commands doing this
    at once start two, of which one gives up (the daemon's lock)."""
    path = socket_path()
    with contextlib.suppress(OSError):  # this command runs in-process anyway
        if len(path.encode()) <= MAX_SOCKET_PATH and private_dir(os.path.dirname(path), create=True):
            spawn(path, AUTO_IDLE_SECONDS)


_GLOBAL_OPTIONS_WITH_VALUES = ("--config", "-c", "--root", "--tenant")


def command_name(args: list[str]) -> str | None:
    """The subcommand in ``args`` (after the global options), or None."""
    values_follow = False
    for arg in args:
        if values_follow:
            values_follow = False
        elif arg in _GLOBAL_OPTIONS_WITH_VALUES:
            values_follow = True
        elif not arg.startswith("-"):
            return arg
    return None


def main() -> None:
    argv = list(sys.argv)
    # `assetry daemon ...` runs here: it must work with no daemon, and must not count as its activity.
    if supported() and not disabled() and command_name(argv[1:]) != "daemon":
        status = run_in_daemon(argv)
        if status is not None:
            if sys.stdout is not None:  # (None when this process started with descriptor 1 closed)
                sys.stdout.flush()
            raise SystemExit(status)
        if _mode() == "auto":
            _start_for_next_time()
    from assetry.cli import main as run_here

    run_here(argv[1:])
