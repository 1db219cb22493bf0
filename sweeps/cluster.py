"""A sweep across machines: the head (Ray head + MLflow tracking server) and
agents (GPU nodes that join the Ray cluster).

Both wrap Ray's and MLflow's own command lines as child processes
(``ray start --block``, ``mlflow server``) and stop exactly what they started,
never other Ray instances on the machine. Ray's token authentication stays on:
the agent takes the cluster's token from ``--token-file``, ``$RAY_AUTH_TOKEN``,
``$RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import ConfigError, FatalError

logger = logging.getLogger(__name__)

#: the custom resource every agent node offers; `agents_only` trials ask for one unit
AGENT_RESOURCE = "sweeps_agent"
AGENT_UNITS = 10_000
DEFAULT_TOKEN = Path.home() / ".ray" / "auth_token"


def ray_cli() -> str:
    """The `ray` executable of this environment."""
    beside = Path(sys.executable).parent / "ray"
    return str(beside) if beside.exists() else (shutil.which("ray") or "ray")


def find_token(token_file: str | None, environ: dict[str, str]) -> tuple[str, str]:
    """The cluster token and where it came from; ConfigError when there is none."""
    if token_file:
        path = Path(token_file).expanduser()
        if not path.is_file() or not path.read_text().strip():
            raise ConfigError(f"--token-file {token_file}: no token there (copy the head's ~/.ray/auth_token)")
        return path.read_text().strip(), str(path)
    if environ.get("RAY_AUTH_TOKEN", "").strip():
        return environ["RAY_AUTH_TOKEN"].strip(), "$RAY_AUTH_TOKEN"
    env_path = environ.get("RAY_AUTH_TOKEN_PATH")
    for path in [Path(env_path)] if env_path else [DEFAULT_TOKEN]:
        if path.is_file() and path.read_text().strip():
            return path.read_text().strip(), str(path)
    raise ConfigError(
        "no Ray cluster token: the head prints where its token is (~/.ray/auth_token on the head); "
        "copy that file to this machine's ~/.ray/auth_token, or pass --token-file FILE, or set RAY_AUTH_TOKEN"
    )


@dataclass
class Child:
    """A child process with its output in a file, stopped with its whole group."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    #: asked to stop by a signal to it alone, which then stops the rest of its group itself:
    #: `ray start --block` does in 2 to 3 s; with the whole group signalled, its node stays up
    leader_stops_group: bool = False

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self) -> None:
        """Ask the process group to stop (SIGTERM to it, or to its leader alone)."""
        try:
            if self.leader_stops_group:
                self.proc.send_signal(signal.SIGTERM)
            else:
                os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 10) -> None:
        """Stop the group: SIGTERM, then SIGKILL after ``timeout`` seconds."""
        if self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:  # whatever of the group is left (Ray's gcs and raylet outlive `ray start`)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self.proc.poll() is None:
            self.proc.wait(10)


def start_child(name: str, argv: list[str], env: dict[str, str], logdir: Path, leader_stops_group: bool = False) -> Child:
    log = logdir / f"{name}.log"
    out = open(log, "wb")  # noqa: SIM115 - closed by the child's exit
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    return Child(name, proc, log, leader_stops_group)


def wait_for(check: Callable[[], bool], child: Child, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if not child.alive():
            raise FatalError(f"{what} did not start:\n{_tail(child.output())}")
        time.sleep(0.3)
    child.stop()
    raise FatalError(f"{what} did not start within {timeout:.0f} s:\n{_tail(child.output())}")


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _ray_env(base: dict[str, str]) -> dict[str, str]:
    env = dict(base)
    env.setdefault("RAY_AUTH_MODE", "token")
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    return env


def _ray_started(child: Child) -> bool:
    return "Ray runtime started" in child.output()


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - the user's own server
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def check_head(address: str, timeout: float = 5.0) -> None:
    """ConfigError at once, in one line, when nothing answers at the Ray head's ``address`` (HOST:PORT):
    Ray's own client retries for minutes, printing connection warnings."""
    import socket

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--address {address}: give the Ray head as HOST:PORT (e.g. 10.0.0.1:6379)")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc)).lower()
    raise ConfigError(f"no Ray head answers at {address} ({why}): start one there with `sweeps head --host {host}` "
                      "(or scripts/start_head.sh), or check the address and that the port is open from this machine")


def check_token(address: str, environ: dict[str, str], token_file: str | None = None,
                timeout: float = 12.0) -> str | None:
    """The Ray token this machine has (None where the user turned Ray's authentication off); ConfigError in one
    line, within seconds, when it has none or the head at ``address`` refuses it. Ray's own clients (`ray start`,
    ``ray.init``) retry a refused token for about 20 s and then report only a failure to connect; Ray's
    `ray status` reports the refusal at its first try."""
    if environ.get("RAY_AUTH_MODE", "token") != "token":
        return None
    token, source = find_token(token_file, environ)
    env = {**_ray_env(environ), "RAY_AUTH_TOKEN": token}
    env.pop("RAY_AUTH_TOKEN_PATH", None)
    try:
        out = subprocess.run([ray_cli(), "status", f"--address={address}"], env=env, stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return token  # not a refusal: ray.init or `ray start` reports whatever else it is
    if out.returncode != 0 and ("InvalidAuthToken" in out.stderr + out.stdout or "AuthenticationError" in out.stderr):
        raise ConfigError(f"the Ray cluster at {address} refused the token from {source}: it is not the head's "
                          "token (the head's is ~/.ray/auth_token on the head machine)")
    return token


def check_database(uri: str, timeout: float = 5.0) -> None:
    """ConfigError in one line, naming the host and what to check but never the password, when a database
    tracking store (PostgreSQL, MySQL) cannot be connected to."""
    import re

    if not uri.startswith(("postgresql", "mysql")):
        return
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    url = make_url(uri)
    where = f"{url.host or 'localhost'}:{url.port or (5432 if uri.startswith('postgresql') else 3306)}"
    try:
        engine = create_engine(url, connect_args={"connect_timeout": int(timeout)})
    except ModuleNotFoundError as exc:
        raise ConfigError(f"no driver for {url.drivername} ({exc.name} is not installed): "
                          "pip install 'sweeps-orchestrator[postgres]'") from None
    try:
        with engine.connect():
            return
    except Exception as exc:  # noqa: BLE001 - the driver's own error, whatever its class, is the reason
        text = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        found = re.search(r"port \d+ failed: (?:FATAL:\s+)?(.*)", text)
        reason = found.group(1) if found else text
    finally:
        engine.dispose()
    raise ConfigError(f"cannot connect to the database at {where} ({reason}): check that the server runs there and "
                      f"lets this machine in, the user and password in the URI, and that database "
                      f"'{url.database}' exists")


def check_tracking(uri: str, timeout: float = 5.0) -> None:
    """ConfigError at once, in one line, when an MLflow tracking server (an http(s) URI) does not answer:
    MLflow's client retries for minutes."""
    if not uri.startswith(("http://", "https://")):
        return
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout):  # noqa: S310 - the user's own server
            pass
    except urllib.error.HTTPError:
        pass  # it answers (an auth proxy may refuse /health)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        why = "timed out" if isinstance(reason, TimeoutError) else str(getattr(reason, "strerror", None) or reason).lower()
        raise ConfigError(f"no MLflow tracking server answers at {uri} ({why}): start one (`sweeps head` does), or "
                          "check --tracking-uri / $MLFLOW_TRACKING_URI") from None
    _check_credentials(uri, timeout)


def _check_credentials(uri: str, timeout: float) -> None:
    """ConfigError in one line when the server refuses the credentials MLflow's client would send (from
    ``$MLFLOW_TRACKING_USERNAME``/``$MLFLOW_TRACKING_PASSWORD``, else ``~/.mlflow/credentials``)."""
    import base64
    import configparser

    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    source = "$MLFLOW_TRACKING_USERNAME/$MLFLOW_TRACKING_PASSWORD"
    if not (user and password):
        path = credentials_path(dict(os.environ))
        parser = configparser.ConfigParser()
        parser.read(path)
        held = parser["mlflow"] if parser.has_section("mlflow") else {}
        user, password, source = held.get("mlflow_tracking_username"), held.get("mlflow_tracking_password"), str(path)
    request = urllib.request.Request(uri.rstrip("/") + "/api/2.0/mlflow/experiments/search", method="POST",
                                     data=b'{"max_results": 1}', headers={"Content-Type": "application/json"})
    if user and password:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=timeout):  # noqa: S310 - the user's own server
            return
    except urllib.error.HTTPError as exc:
        if exc.code != 401:
            return  # it answers; MLflow's client says the rest
    except (urllib.error.URLError, OSError):
        return
    what = f"the credentials from {source}" if user and password else "a request without credentials"
    raise ConfigError(f"the MLflow tracking server at {uri} refused {what} (401): copy the head's ~/.mlflow/credentials "
                      "to this machine's ~/.mlflow/credentials (beside ~/.ray/auth_token), or set "
                      "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD")


@dataclass
class Head:
    ray: Child
    mlflow: Child
    ray_address: str
    tracking_uri: str
    token_path: str
    #: the MLflow server's credentials file (None: no authentication)
    credentials: Path | None = None

    def stop(self) -> None:
        self.mlflow.terminate()
        self.ray.terminate()
        self.mlflow.stop()
        stop_ray_head(self.ray, self.ray_address)


def stop_ray_head(ray: Child, address: str) -> None:
    """Stop a head that :func:`start_ray_head` started (only that one)."""
    ray.stop()
    # Ray's pointer to "the cluster on this machine" would outlive the head and
    # make a later plain ray.init() try to join a dead cluster
    pointer = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    try:
        if pointer.read_text().strip().endswith(f":{address.rsplit(':', 1)[1]}"):
            pointer.unlink()
    except OSError:
        pass


def start_ray_head(host: str, port: int, cpus: float | None, gpus: float | None, logdir: Path,
                   environ: dict[str, str]) -> Child:
    """Start a Ray head (``ray start --head --block``, with a token made for it if there is none)
    and wait until it runs."""
    env = _ray_env(environ)
    try:
        find_token(None, environ)
    except ConfigError:  # a new cluster: make its token (saved to ~/.ray/auth_token)
        subprocess.run([ray_cli(), "get-auth-token", "--generate"], env=env, capture_output=True, timeout=60, check=True)
    argv = [ray_cli(), "start", "--head", "--block", f"--port={port}", "--disable-usage-stats",
            "--include-dashboard=false"]
    if host not in ("0.0.0.0", ""):
        argv.append(f"--node-ip-address={host}")
    if cpus is not None:
        argv.append(f"--num-cpus={cpus:g}")
    if gpus is not None:
        argv.append(f"--num-gpus={gpus:g}")
    ray = start_child("ray-head", argv, env, logdir, leader_stops_group=True)
    wait_for(lambda: _ray_started(ray), ray, f"the Ray head on port {port}", 120)
    return ray


def credentials_path(environ: dict[str, str]) -> Path:
    """Where MLflow's clients look for their user name and password by themselves."""
    return Path(environ.get("HOME") or Path.home()) / ".mlflow" / "credentials"


def head_credentials(environ: dict[str, str]) -> tuple[str, str, Path]:
    """The MLflow server's admin (user name, password) and the credentials file that holds them: the one
    there, or on the first start a new password written there (mode 0600), where MLflow's clients look."""
    import configparser
    import secrets

    path = credentials_path(environ)
    parser = configparser.ConfigParser()
    if path.exists():
        parser.read(path)
    held = parser["mlflow"] if parser.has_section("mlflow") else {}
    user, password = held.get("mlflow_tracking_username"), held.get("mlflow_tracking_password")
    if user and password:
        return user, password, path
    user, password = "admin", secrets.token_urlsafe(24)
    if not parser.has_section("mlflow"):
        parser.add_section("mlflow")
    parser["mlflow"]["mlflow_tracking_username"] = user
    parser["mlflow"]["mlflow_tracking_password"] = password
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        parser.write(f)
    os.chmod(path, 0o600)
    return user, password, path


def _auth_env(auth_db: str, logdir: Path, environ: dict[str, str]) -> tuple[dict[str, str], Path]:
    """The environment that makes `mlflow server --app-name basic-auth` use ``auth_db`` and the head's admin."""
    user, password, path = head_credentials(environ)
    ini = logdir / "basic_auth.ini"
    # auth_cache_ttl_seconds: a login checked once a minute per server worker, not at every request (each check
    # hashes the password with scrypt, and every write of every trial is a request)
    ini.write_text(f"[mlflow]\ndefault_permission = READ\ndatabase_uri = {auth_db}\nadmin_username = {user}\n"
                   "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                   "auth_cache_ttl_seconds = 60\n")
    import secrets

    # the key of the UI's CSRF protection, one for the server's workers; a new one each start
    key = environ.get("MLFLOW_FLASK_SERVER_SECRET_KEY") or secrets.token_hex(32)
    return {"MLFLOW_AUTH_CONFIG_PATH": str(ini), "MLFLOW_AUTH_ADMIN_PASSWORD": password,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": key}, path


def start_head(host: str, port: int, mlflow_port: int, backend_store_uri: str, artifacts_destination: str,
               cpus: float | None, gpus: float | None, logdir: Path, environ: dict[str, str],
               auth_db: str | None = None) -> Head:
    """Start a Ray head and an MLflow tracking server that serves artifacts over HTTP; with ``auth_db``, the
    server asks for MLflow's basic authentication (its admin in ``~/.mlflow/credentials``)."""
    ray = start_ray_head(host, port, cpus, gpus, logdir, environ)
    mlflow_argv = [sys.executable, "-m", "mlflow", "server", "--host", host, "--port", str(mlflow_port),
                   "--backend-store-uri", backend_store_uri, "--artifacts-destination", artifacts_destination,
                   "--serve-artifacts", "--workers", "2"]
    # without MLflow's job runner (its GenAI jobs, which sweeps never submits): a job runner and seven huey
    # consumers that each import MLflow; a user's own MLFLOW_SERVER_ENABLE_JOB_EXECUTION wins
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **environ, "MLFLOW_LOGGING_LEVEL": "WARNING"}
    credentials = None
    if auth_db is not None:
        extra, credentials = _auth_env(auth_db, logdir, environ)
        env.update(extra)
        mlflow_argv += ["--app-name", "basic-auth"]
    mlflow = start_child("mlflow-server", mlflow_argv, env, logdir)
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    try:
        wait_for(lambda: _http_ok(f"http://{shown}:{mlflow_port}/health"), mlflow, f"mlflow server on port {mlflow_port}", 120)
    except FatalError:
        ray.stop()
        raise
    token = environ.get("RAY_AUTH_TOKEN_PATH") or str(DEFAULT_TOKEN)
    return Head(ray, mlflow, f"{shown}:{port}", f"http://{shown}:{mlflow_port}", token, credentials)


@dataclass
class Agent:
    ray: Child
    address: str


def start_agent(address: str, cpus: float | None, gpus: float | None, token_file: str | None, logdir: Path,
                environ: dict[str, str], extra: list[str] | None = None) -> Agent:
    """Join this machine to the cluster at ``address`` as a worker node for trials."""
    check_head(address)
    token = check_token(address, environ, token_file)
    env = _ray_env(environ)
    if token is not None:
        env["RAY_AUTH_TOKEN"] = token
    argv = [ray_cli(), "start", f"--address={address}", "--block", "--disable-usage-stats",
            f"--resources={json.dumps({AGENT_RESOURCE: AGENT_UNITS})}"]
    if cpus is not None:
        argv.append(f"--num-cpus={cpus:g}")
    if gpus is not None:
        argv.append(f"--num-gpus={gpus:g}")
    argv += extra or []
    child = start_child("ray-agent", argv, env, logdir, leader_stops_group=True)
    try:
        wait_for(lambda: _ray_started(child), child, f"the agent joining {address}", 120)
    except FatalError:
        text = child.output()
        if "Unable to connect" in text or "Failed to connect" in text or "timed out" in text.lower():
            raise ConfigError(f"cannot reach the Ray head at {address}: is `sweeps head` running there, and is "
                              "the port open from this machine?") from None
        raise
    return Agent(child, address)


def detected_gpus() -> int:
    """GPUs nvidia-smi lists on this machine (0 without NVIDIA GPUs)."""
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def run_until_signal(children: list[Child], on_exit: Callable[[], None]) -> int:
    """Block until SIGINT/SIGTERM or until a child dies; then stop everything."""
    stop = {"flag": False}

    def handler(signum: int, frame: object) -> None:
        stop["flag"] = True

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    code = 0
    try:
        while not stop["flag"]:
            dead = [c for c in children if not c.alive()]
            if dead:
                logger.error("%s exited:\n%s", dead[0].name, _tail(dead[0].output()))
                code = 1
                break
            time.sleep(0.5)
    finally:
        on_exit()
        for s, h in old.items():
            signal.signal(s, h)
    return code


def logdir_for(name: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"sweeps-{name}-"))
