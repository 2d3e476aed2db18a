"""The command daemon: a process that has imported assetry, its plugins and their backends once, and
forks a child per ``assetry`` command, so commands skip the second of imports they used to start with.

``python -m assetry.daemon --socket PATH`` runs it in the foreground; ``assetry daemon start`` runs it in
the background. The client side is `assetry._launch`; the exchange on the Unix socket is one request
(length-prefixed JSON, the client's stdin, stdout and stderr passed along as file descriptors) and JSON
lines back: ``{"pid": ...}`` when the child runs, then ``{"exit": n}`` or ``{"signal": n}``.

The child is a fork of an idle process, so it starts from the same state a fresh process has after its
imports: it opens its store, reads its configuration (from the client's working directory and
environment) and exits, like any command. Nothing is shared between commands but imported modules.
The daemon stops serving when the code it imported changes on disk (an upgrade, an edit of a plugin or
of a development checkout): clients then run commands in-process until a new daemon is started. It
also stops after ``idle`` seconds without a command, and on ``assetry daemon stop`` or SIGTERM; it waits
for running commands first.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import gc
import importlib
import io
import json
import os
import selectors
import signal
import socket
import struct
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from typing import Any, TextIO

from assetry import _launch

DEFAULT_IDLE_SECONDS = 3600
REQUEST_TIMEOUT = 5.0
"""Seconds a client has to send its request: the daemon serves one connection at a time until then."""

_MAX_REQUEST = 16 * 1024 * 1024


def preload() -> list[str]:
    """Import what commands import: the command line, the store, every plugin found through entry
    points, and the modules their backends name in ``preload``. Returns problems (not fatal: a command
    that needs a broken plugin reports it itself)."""
    import assetry.cli  # noqa: F401 - the command line, the store, the data model and config
    from assetry.backends import CatalogBackend, StorageBackend
    from assetry.plugins import catalog_backends, get_plugin_manager, storage_backends

    problems = []
    pm = get_plugin_manager()
    backends: list[StorageBackend | CatalogBackend] = [
        *storage_backends(pm).values(),
        *catalog_backends(pm).values(),
    ]
    for backend in backends:
        for module in backend.preload:
            try:
                importlib.import_module(module)
            except Exception as exc:
                problems.append(f"{backend.name}: cannot import {module}: {exc}")
    return problems


class CodeFingerprint:
    """The modification times of every imported module's file and of every import directory: a
    changed file, or a distribution installed or removed, tells that this process runs old code."""

    def __init__(self) -> None:
        self._seen = self._scan()

    @staticmethod
    def _scan() -> dict[str, int]:
        # Not sys.path[0]: the daemon's working directory, replaced by the client's in each child.
        paths = {d for d in sys.path[1:] if d and os.path.isdir(d)}
        for module in list(sys.modules.values()):
            path = getattr(module, "__file__", None)
            if path:
                paths.add(path)
        seen = {}
        for path in paths:
            try:
                seen[path] = os.stat(path).st_mtime_ns
            except OSError:
                seen[path] = -1
        return seen

    def changed(self) -> str | None:
        """The first path that changed since this fingerprint was taken, or None."""
        for path, mtime in self._seen.items():
            try:
                now = os.stat(path).st_mtime_ns
            except OSError:
                now = -1
            if now != mtime:
                return path
        return None


class Daemon:
    def __init__(self, path: str, idle_seconds: float, log: Callable[[str], None]) -> None:
        self.path = path
        self.idle_seconds = idle_seconds
        self.log = log
        self.started = time.time()
        self.last_activity = time.monotonic()
        self.served = 0
        self.accepting = True
        self.children: dict[int, socket.socket] = {}
        self.fingerprint = CodeFingerprint()
        self.selector = selectors.DefaultSelector()
        self._lock = -1
        self.listener = self._listen()
        self._wake_read, self._wake_write = os.pipe()

    def _listen(self) -> socket.socket:
        directory = os.path.dirname(self.path)
        if not _launch.private_dir(directory, create=True):
            raise SystemExit(f"assetry daemon: {directory} must be a directory only this user can use")
        if len(self.path.encode()) > _launch.MAX_SOCKET_PATH:
            raise SystemExit(f"assetry daemon: socket path too long ({self.path}); set {_launch.DIR_ENV}")
        # Held while the daemon accepts commands: of two daemons started at once, the second would
        # otherwise replace the first one's socket, and the first would idle, unreachable.
        import fcntl  # Unix only, as the daemon is (the command line runs in-process elsewhere)

        self._lock = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit("assetry daemon: already running for this environment") from None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # left by a daemon that was killed
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.path)
        listener.listen(64)
        return listener

    # -- the loop -----------------------------------------------------------------------------------

    def serve(self) -> None:
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        signal.set_wakeup_fd(self._wake_write)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes select through the wakeup fd
        signal.signal(signal.SIGTERM, lambda *_: self.stop_accepting("SIGTERM"))
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(self._wake_read, selectors.EVENT_READ, "wake")
        self.log(f"serving on {self.path} (pid {os.getpid()})")
        try:
            while self.accepting or self.children:
                timeout = None
                if self.accepting and not self.children:
                    timeout = max(0.0, self.last_activity + self.idle_seconds - time.monotonic())
                events = self.selector.select(timeout)
                if not events and self.accepting and not self.children:
                    self.stop_accepting(f"idle for {self.idle_seconds:g} s")
                for key, _ in events:
                    if key.data == "accept":
                        self._accept()
                    elif key.data == "wake":
                        _drain(self._wake_read)
                    else:
                        self._client_gone(key.data)
                self._reap()
        finally:
            self.stop_accepting("exiting")
            self.log("stopped")

    def stop_accepting(self, reason: str) -> None:
        if not self.accepting:
            return
        self.accepting = False
        self.log(f"no longer accepting commands: {reason}")
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(self.listener)
        self.listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.close(self._lock)  # a new daemon may start while this one lets its commands finish
        self._lock = -1

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        conn.settimeout(REQUEST_TIMEOUT)
        fds: list[int] = []
        try:
            if not _same_user(conn):
                conn.close()
                return
            request, fds = _receive(conn)
            self._handle(conn, request, fds)
        except (OSError, ValueError) as exc:
            self.log(f"bad request: {exc}")
            conn.close()
        finally:
            for fd in fds:
                os.close(fd)

    def _handle(self, conn: socket.socket, request: dict[str, Any], fds: list[int]) -> None:
        op = request.get("op")
        if request.get("protocol") != _launch.PROTOCOL:
            _reply(conn, {"refused": f"protocol {request.get('protocol')!r}, expected {_launch.PROTOCOL}"})
            conn.close()
        elif op == "status":
            _reply(conn, self.status())
            conn.close()
        elif op == "stop":
            _reply(conn, {"stopping": True, "commands_running": len(self.children)})
            conn.close()
            self.stop_accepting("asked to stop")
        elif op == "run" and self.accepting:
            stale = self.fingerprint.changed()
            if stale is not None:
                _reply(conn, {"refused": "the installed code changed"})
                conn.close()
                self.stop_accepting(f"code changed ({stale})")
                return
            self._fork(conn, request, fds)
        else:
            _reply(conn, {"refused": f"unknown request {op!r}"})
            conn.close()

    def status(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "socket": self.path,
            "started": self.started,
            "served": self.served,
            "commands_running": len(self.children),
            "idle_seconds": self.idle_seconds,
            "python": sys.executable,
        }

    def _fork(self, conn: socket.socket, request: dict[str, Any], fds: list[int]) -> None:
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 1
            try:
                self.listener.close()
                conn.close()
                os.close(self._wake_read)
                os.close(self._wake_write)
                os.close(self._lock)  # a command must not hold the daemon's lock after it
                code = run_command(request, fds)
            except BaseException:
                traceback.print_exc()  # on the client's stderr once run_command has set it up
            finally:
                os._exit(code)
        self.served += 1
        # Only commands count as activity: a script polling the status must not keep an idle daemon up.
        self.last_activity = time.monotonic()
        self.children[pid] = conn
        conn.settimeout(None)
        self.selector.register(conn, selectors.EVENT_READ, pid)
        _reply(conn, {"pid": pid})

    def _client_gone(self, pid: int) -> None:
        """The client closed its end (it was killed): end its command as its own death would have."""
        conn = self.children.get(pid)
        if conn is not None:
            self.selector.unregister(conn)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            if conn is None:
                continue
            self.last_activity = time.monotonic()
            outcome = (
                {"signal": os.WTERMSIG(status)}
                if os.WIFSIGNALED(status)
                else {"exit": os.WEXITSTATUS(status)}
            )
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(conn)
            with contextlib.suppress(OSError):
                _reply(conn, outcome)
            conn.close()


# -- the child's side -------------------------------------------------------------------------------------


def run_command(request: dict[str, Any], fds: list[int]) -> int:
    """In the forked child: become the client's process (descriptors, directory, environment, umask,
    arguments) and run the command line. Returns the exit status."""
    for name in ("SIGCHLD", "SIGTERM", "SIGHUP", "SIGQUIT"):
        signal.signal(getattr(signal, name), signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.set_wakeup_fd(-1)
    given = dict(zip(request["fds"], fds, strict=True))
    for target in (0, 1, 2):
        source = given.get(target)
        if source is None:
            source = os.open(os.devnull, os.O_RDWR)
        os.dup2(source, target)
        os.close(source)
    os.chdir(request["cwd"])
    os.umask(int(request["umask"]))
    os.environ.clear()
    os.environ.update(request["env"])
    time.tzset()  # the client's TZ, for local times
    _fresh_std_streams(request["streams"])
    sys.argv = list(request["argv"])
    sys.path[0] = request["path0"]  # the script's or working directory, as the client's own import path
    try:
        from assetry.cli import main

        main(sys.argv[1:])
        code: int = 0
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except KeyboardInterrupt:
        # As Python itself ends on an uncaught Ctrl-C: killed by SIGINT, which the client then repeats.
        sys.stderr.flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        code = 128 + signal.SIGINT
    except BaseException:
        traceback.print_exc()
        code = 1
    try:
        atexit._run_exitfuncs()  # what interpreter exit would run: flushes usage, closes stores
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
    return code


def _exit_code(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    print(value, file=sys.stderr)
    return 1


def _fresh_std_streams(settings: list[list[str | None]]) -> None:
    """sys.stdin, stdout and stderr over descriptors 0-2 as Python builds them at start-up (line
    buffered on a terminal; stderr always), with the client's encodings."""
    (in_enc, in_err), (out_enc, out_err), (err_enc, err_err) = settings
    sys.stdin = io.TextIOWrapper(
        io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding=in_enc, errors=in_err
    )
    sys.stdout = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(1, "w", closefd=False)),
        encoding=out_enc,
        errors=out_err,
        line_buffering=os.isatty(1),
    )
    sys.stderr = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(2, "w", closefd=False)),
        encoding=err_enc,
        errors=err_err or "backslashreplace",
        line_buffering=True,
    )


# -- plumbing ---------------------------------------------------------------------------------------------


def _same_user(conn: socket.socket) -> bool:
    """The socket's directory is private already; on Linux, also check the peer's uid."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return True
    creds = conn.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    _, uid, _ = struct.unpack("3i", creds)
    return bool(uid == os.getuid())


def _receive(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    header, fds, _, _ = socket.recv_fds(conn, 4, 3)
    try:
        while len(header) < 4:
            more = conn.recv(4 - len(header))
            if not more:
                raise ValueError("connection closed in the header")
            header += more
        (length,) = struct.unpack("!I", header)
        if length > _MAX_REQUEST:
            raise ValueError(f"request of {length} bytes")
        body = bytearray()
        while len(body) < length:
            more = conn.recv(length - len(body))
            if not more:
                raise ValueError("connection closed in the request")
            body += more
        request = json.loads(body)
        if not isinstance(request, dict):
            raise ValueError("request is not an object")
        if request.get("op") == "run" and len(request.get("fds", ())) != len(fds):
            raise ValueError("descriptors missing")
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return request, fds


def _reply(conn: socket.socket, message: dict[str, Any]) -> None:
    conn.sendall(json.dumps(message).encode() + b"\n")


def _drain(fd: int) -> None:
    with contextlib.suppress(BlockingIOError):  # (EAGAIN: the non-blocking pipe is empty)
        while os.read(fd, 4096):
            pass


def _log_to(stream: TextIO) -> Callable[[str], None]:
    def log(message: str) -> None:
        stream.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} assetry daemon[{os.getpid()}]: {message}\n")
        stream.flush()

    return log


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m assetry.daemon", description=__doc__.split("\n\n")[0])
    parser.add_argument("--socket", help="socket path (default: the one `assetry` commands look for)")
    parser.add_argument(
        "--idle", type=float, default=DEFAULT_IDLE_SECONDS, help="stop after this many idle seconds"
    )
    args = parser.parse_args(argv)
    log = _log_to(sys.stderr)
    # LanceDB warns once per fork that its fork support is new; it resets its runtime in the child,
    # and a child here is forked from an idle process, the case that support is for.
    warnings.filterwarnings("ignore", message=".*fork")
    warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*fork")
    for problem in preload():
        log(problem)
    gc.collect()
    gc.freeze()  # children then do not copy every page the collector would touch
    daemon = Daemon(args.socket or _launch.socket_path(), args.idle, log)
    daemon.serve()


if __name__ == "__main__":
    main()
