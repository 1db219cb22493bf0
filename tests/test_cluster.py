"""A sweep across a Ray cluster on this machine: `sweeps head`, `sweeps agent`
processes on loopback with logical GPUs, a real `mlflow server`, and
`sweeps launch --address` as a user runs them."""

from __future__ import annotations

import configparser
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import psutil
import pytest
from conftest import SWEEPS, create_database
from wandb_offline import offline_runs

#: one test process runs them all (scripts/test.sh: xdist's --dist loadgroup), so one `sweeps head` serves them
pytestmark = pytest.mark.xdist_group("cluster")

TRAINER = '''
import json, os, time
from pathlib import Path

def train(config, report):
    if config.get("bad_node") and os.environ.get("SWEEPS_TEST_NODE") == config["bad_node"]:
        raise RuntimeError("this node is broken")
    start = time.time()
    if config.get("together"):  # wait until that many trials have started: they run at once when they can
        with open(Path(config["out"], f"started-{config['i']}"), "a") as f:  # the node of each attempt, in order
            f.write(os.environ.get("SWEEPS_TEST_NODE", "") + "\\n")
        deadline = time.time() + 120
        while len(list(Path(config["out"]).glob("started-*"))) < config["together"] and time.time() < deadline:
            time.sleep(0.05)
    time.sleep(float(config.get("sleep", 1.0)))
    Path(config["out"], f"{config['i']}-{os.getpid()}-{start}.json").write_text(json.dumps(
        {"i": config["i"], "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": start, "end": time.time()}))
    report(step=0, loss=float(config["i"]))
    return {"loss": float(config["i"])}
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # a lost node is noticed in about 5 s instead of Ray's default 15-55 s (with 1.5 s, a busy 2-core
    # machine once had the head's own node marked dead, and the launch's driver with it)
    env.update(RAY_health_check_period_ms="1000", RAY_health_check_timeout_ms="2000",
               RAY_health_check_failure_threshold="3", RAY_USAGE_STATS_ENABLED="0", WANDB_SILENT="true")
    return env


def _start(argv: list[str], cwd: Path, ready: str, timeout: float = 180,
           env: dict[str, str] | None = None) -> tuple[subprocess.Popen, list[str]]:
    proc = subprocess.Popen([*SWEEPS, *argv], cwd=cwd, env={**_env(), **(env or {})},
                            stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        if not line and proc.poll() is not None:
            break
        lines.append(line.rstrip())
        if ready in line:
            return proc, lines
    _stop(proc)
    raise AssertionError(f"{argv[0]} did not get ready:\n" + "\n".join(lines))


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            _kill_tree(proc.pid)


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants: a machine that dies."""
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    for p in [root, *root.children(recursive=True)]:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


@dataclass
class Head:
    dir: Path
    address: str
    uri: str
    backend: str  # the tracking server's database
    pid: int  # the `sweeps head` process


@pytest.fixture(scope="session")
def head(tmp_path_factory, request) -> Iterator[Head]:
    """One `sweeps head` for every cluster test (they run in one test process; a head takes up to a minute
    to start). Its database is PostgreSQL, as a
    team's is, where the package is there (tests/test_postgres.py says when it is not), else sqlite."""
    d = tmp_path_factory.mktemp("head")
    port, mport = _free_port(), _free_port()
    try:
        backend = create_database(request.getfixturevalue("postgres"), f"head{port}")
    except pytest.skip.Exception:
        backend = f"sqlite:///{d}/server.db"
    proc, lines = _start(["head", "--port", str(port), "--mlflow-port", str(mport), "--cpus", "0",
                          "--backend-store-uri", backend, "--artifacts-destination", str(d / "artifacts")],
                         d, "Ctrl-C stops the head")
    assert f"attach a GPU node:  sweeps agent --address 127.0.0.1:{port}" in lines
    yield Head(d, f"127.0.0.1:{port}", f"http://127.0.0.1:{mport}", backend, proc.pid)
    _stop(proc, signal.SIGINT)  # Ctrl-C
    assert proc.returncode == 0
    # nothing of the head is left: not Ray's processes (its gcs on `port`), not the MLflow server
    left = [p.info["cmdline"] for p in psutil.process_iter(["cmdline"])
            if any(a in (f"--gcs_server_port={port}", f"--port={port}", str(mport)) for a in p.info["cmdline"] or [])]
    assert not left, left


@contextmanager
def agent(head: Head, gpus: int, cpus: int, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """A `sweeps agent` for the block; then it leaves as Ctrl-C makes it leave."""
    proc, lines = _start(["agent", "--address", head.address, "--gpus", str(gpus), "--cpus", str(cpus)], head.dir,
                         "Ctrl-C leaves the cluster", env=env)
    assert lines[0] == f"joined {head.address} as an agent (resource sweeps_agent): GPUs {gpus}, CPUs {cpus}"
    try:
        yield proc
    finally:
        _stop(proc, signal.SIGINT)


def _node_ids(head: Head) -> dict[str, dict]:
    """Alive nodes of the cluster, asked from a separate driver process."""
    code = ("import json, ray; ray.init(address=%r, log_to_driver=False); "
            "print(json.dumps({n['NodeID']: n['Resources'] for n in ray.nodes() if n['Alive']}))") % head.address
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**_env(), "RAY_AUTH_MODE": "token"}, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _sweep_dir(tmp: Path, name: str, resources: str, n: int, sleep: float, together: int = 0) -> Path:
    work = tmp / name
    (work / "out").mkdir(parents=True)
    (work / "cluster_trainer.py").write_text(TRAINER)  # travels to the workers with the working directory
    (work / "s.yaml").write_text(
        f"name: {name}\nmethod: grid\nmetric: {{name: loss}}\ntrainer: cluster_trainer:train\nresources: {resources}\n"
        f"parameters:\n  i: {{values: {list(range(n))}}}\n  sleep: {{value: {sleep}}}\n  out: {{value: '{work / 'out'}'}}\n"
        + (f"  together: {{value: {together}}}\n" if together else ""))
    return work


def _launch(head: Head, work: Path, *extra: str, wait: bool = True,
            env: dict[str, str] | None = None) -> subprocess.Popen | subprocess.CompletedProcess:
    argv = [*SWEEPS, "launch", "s.yaml", "--address", head.address,
            "--tracking-uri", head.uri, "--agents-only", *extra]
    environ = {**_env(), **(env or {})}
    if wait:
        return subprocess.run(argv, cwd=work, env=environ, capture_output=True, text=True, timeout=600,
                              stdin=subprocess.DEVNULL)
    return subprocess.Popen(argv, cwd=work, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL)


def _children(head: Head, name: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(head.uri)
    exp = client.get_experiment_by_name(name)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    return [r for r in runs if r.data.tags.get("sweeps.role") == "trial"]


def _probes(work: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in (work / "out").glob("*.json")]


def _overlapping(probes: list[dict]) -> int:
    """The most trials that ran at the same moment."""
    return max(sum(1 for q in probes if q["start"] <= p["start"] < q["end"]) for p in probes)


#: secrets as a team's machines hold them: in the environment of the launch and of the agents, in a `.env`
#: file and in the git remote of the launch directory; the MLflow credentials are the head's own
CANARIES = {"OPENAI_API_KEY": "sk-canary-env-key-5e1f", "HF_TOKEN": "hf_canarytoken7c3d",
            "DB_PASSWORD": "canary-db-password-91ab", "DATABASE_URL": "postgresql://u:canary-dburl-44fe@db:5432/x",
            "WANDB_API_KEY": "canary0wandb0key0" + "0" * 23}
CANARY_DOTENV, CANARY_GIT = "canary-dotenv-secret-d00d", "canary-git-password-beef"


def _plant(work: Path) -> None:
    """A `.env` file, and a git repository whose remote URL carries a password."""
    (work / ".env").write_text(f"API_SECRET={CANARY_DOTENV}\n")
    git = ["git", "-C", str(work), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "remote", "add", "origin", f"https://team:{CANARY_GIT}@git.example.com/ml.git"], check=True)
    (work / ".gitignore").write_text(".env\nwandb/\n.sweeps/\nseen/\nout/\n")
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "first"], check=True)


def _found(canaries: list[str], places: list[Path], backend: str) -> list[str]:
    """Where any canary is: in a file under ``places`` (except what a script wrote for the test itself,
    ``seen/``, and the planted ``.env`` and ``.git``), or in any row of any table of the database."""
    import sqlalchemy

    hits = []
    for place in places:
        for f in place.rglob("*") if place.is_dir() else []:
            if f.is_file() and not {"seen", ".git"} & set(f.parts) and f.name != ".env" and f.stat().st_size < 50e6:
                data = f.read_bytes()
                hits += [f"{c} in {f}" for c in canaries if c.encode() in data]
    engine = sqlalchemy.create_engine(backend)
    with engine.connect() as conn:
        for table in sqlalchemy.inspect(engine).get_table_names():
            text = str(conn.execute(sqlalchemy.text(f'SELECT * FROM "{table}"')).fetchall())
            hits += [f"{c} in table {table}" for c in canaries if c in text]
    engine.dispose()
    return hits


def test_trials_and_wandb_programs_run_on_agents_and_log_to_the_tracking_server(head: Head, tmp_path: Path) -> None:
    work = _sweep_dir(tmp_path, "on-agents", "{cpus: 1}", 3, 0.2)
    program = tmp_path / "program"
    program.mkdir()
    shutil.copy(Path(__file__).parent / "program_script.py", program / "train.py")
    # the command passes a token from the environment, as W&B files do with ${envvar:}
    (program / "s.yaml").write_text("name: program-on-agents\nprogram: train.py\nmethod: grid\nmetric: {name: loss}\n"
                                    "command:\n  - ${env}\n  - ${interpreter}\n  - ${program}\n  - --token\n"
                                    "  - ${envvar:HF_TOKEN}\n  - ${args}\n"
                                    "parameters:\n  x: {values: [2]}\n  mode: {value: mlflow}\n")
    for d in (work, program):
        _plant(d)
    secrets = {**CANARIES, "WANDB_DISABLE_GIT": "false"}  # W&B may look at git, as it does by default
    with agent(head, gpus=0, cpus=2, env=secrets):
        nodes = _node_ids(head)
        agents = {nid for nid, res in nodes.items() if "sweeps_agent" in res}
        out = _launch(head, work, env=secrets)
        ran = _launch(head, program, env=secrets)
    assert out.returncode == 0, out.stdout + out.stderr
    assert ran.returncode == 0, ran.stdout + ran.stderr
    scripts = _children(head, "program-on-agents")
    assert len(scripts) == 1 and {c.info.status for c in scripts} == {"FINISHED"}, scripts[0].data.tags.get("sweeps.error")
    assert {c.data.tags["sweeps.node.id"] for c in scripts} <= agents
    from mlflow import MlflowClient

    for c in scripts:  # what the script logged (with wandb.log, and to MLflow over HTTP) reached the server, once
        assert c.data.params["from_the_script"] == "yes"
        assert [m.step for m in MlflowClient(head.uri).get_metric_history(c.info.run_id, "loss")] == [0, 1, 2, 3]
    children = _children(head, "on-agents")
    assert len(children) == 3 and {c.info.status for c in children} == {"FINISHED"}
    assert {c.data.tags["sweeps.node.id"] for c in children} <= agents
    from mlflow import MlflowClient

    client = MlflowClient(head.uri)
    for c in children:  # artifacts went to the server over HTTP
        assert c.info.artifact_uri.startswith("mlflow-artifacts:")
        assert [a.path for a in client.list_artifacts(c.info.run_id)] == ["config.json"]
    assert list((head.dir / "artifacts").rglob("config.json"))
    # the launch's node holds no trial, so no recorder there: the launch writes the sweep's own W&B run itself
    sweep_runs = [r for r in offline_runs(work) if r.job_type == "sweep"]
    assert len(sweep_runs) == 1 and sweep_runs[0].exit_code == 0 and sweep_runs[0].summary["trials_finished"] == 3

    # no secret in any record: the tracking server's tables and artifacts, W&B's files where the launch ran and
    # where the agent ran the trials (Ray's copy of the launch directory), the state directories, Ray's logs
    seen = json.loads((program / "seen" / "0.json").read_text())  # (on one machine it runs in the launch directory)
    assert seen["argv"][:2] == ["--token", CANARIES["HF_TOKEN"]]  # the script got it
    mlflow_password = next(line.split("=", 1)[1].strip() for line in
                           (Path.home() / ".mlflow" / "credentials").read_text().splitlines() if "password" in line)
    canaries = [*CANARIES.values(), CANARY_DOTENV, CANARY_GIT, mlflow_password]
    places = [head.dir / "artifacts", work, program, Path(tempfile.gettempdir()) / "ray"]
    assert _found(canaries, places, head.backend) == []
    log = MlflowClient(head.uri).download_artifacts(scripts[0].info.run_id, "output.log", str(tmp_path))
    assert "the script started with --token *** --x=2" in Path(log).read_text()  # masked in what sweeps records


def test_quarter_gpus_share_one_gpu_a_two_gpu_trial_gets_two_ids_and_a_failing_node_gets_no_more(
        head: Head, tmp_path: Path) -> None:
    # each trial waits (up to 2 minutes) until all four have started: their workers may start seconds apart
    quarter = _sweep_dir(tmp_path, "quarter", "{gpus: 0.25, cpus: 0.5}", 4, 0.5, together=4)
    double = _sweep_dir(tmp_path, "double", "{gpus: 2, cpus: 1}", 1, 0.1)
    # trials fail on the node whose agent says it is node "b"; 3 trials at once fill both agents' CPUs
    bad = _sweep_dir(tmp_path, "bad-node", "{cpus: 1}", 6, 1.0)
    (bad / "s.yaml").write_text((bad / "s.yaml").read_text() + "  bad_node: {value: b}\n"
                                "node_failure_limit: 2\nretries: {max: 2}\n")
    with agent(head, gpus=1, cpus=2, env={"SWEEPS_TEST_NODE": "a"}):
        out = _launch(head, quarter)
        assert out.returncode == 0, out.stdout + out.stderr
        with agent(head, gpus=2, cpus=1, env={"SWEEPS_TEST_NODE": "b"}):
            out2 = _launch(head, double)
            assert out2.returncode == 0, out2.stdout + out2.stderr
            out3 = _launch(head, bad, "--parallel", "3")
    probes = _probes(quarter)
    assert len(probes) == 4 and {p["cuda"] for p in probes} == {"0"}
    assert _overlapping(probes) == 4  # all four at once on the one GPU
    assert [p["cuda"] for p in _probes(double)] == ["0,1"]
    (run,) = _children(head, "double")
    assert run.data.tags["sweeps.gpu.ids"] == "0,1" and run.data.tags["sweeps.gpu.name"]

    assert out3.returncode == 0, out3.stdout + out3.stderr
    assert "gets no more trials in this sweep: 2 failures in a row" in out3.stderr
    children = _children(head, "bad-node")
    failed = [c for c in children if c.info.status == "FAILED"]
    assert len(failed) == 2 and len({c.data.tags["sweeps.node.id"] for c in failed}) == 1
    bad_node = failed[0].data.tags["sweeps.node.id"]
    finished = [c for c in children if c.info.status == "FINISHED"]
    assert sorted(int(c.data.params["i"]) for c in finished) == list(range(6))  # failed points ran again elsewhere
    assert all(c.data.tags["sweeps.node.id"] != bad_node for c in finished)


def test_an_agent_that_joins_mid_sweep_gets_a_trial_and_when_it_dies_the_trial_runs_again_elsewhere(
        head: Head, tmp_path: Path) -> None:
    # the first trial waits for a second one to start: that one can only start on the agent that joins once the
    # first runs (one CPU each); once both run, the new agent's machine dies mid-trial. An agent never used
    # leaves the first trial alone after 120 s, and the test fails.
    work = _sweep_dir(tmp_path, "joins-dies", "{cpus: 1}", 4, 3.0, together=2)
    with agent(head, gpus=0, cpus=1, env={"SWEEPS_TEST_NODE": "first"}):
        launch = _launch(head, work, "--parallel", "2", wait=False)
        deadline = time.monotonic() + 300
        while not (work / "out" / "started-0").exists() and time.monotonic() < deadline:
            assert launch.poll() is None, launch.stdout.read()  # type: ignore[union-attr]
            time.sleep(0.2)
        with agent(head, gpus=0, cpus=1, env={"SWEEPS_TEST_NODE": "joined"}) as joined:
            joined_at = time.time()
            # until the joined agent's trial has written where it started (its file exists a moment before that:
            # killed in between, the attempt would leave an empty file and the test would fail on a race of its own)
            while not any("joined" in p.read_text() for p in (work / "out").glob("started-*")) \
                    and time.monotonic() < deadline:
                time.sleep(0.1)
            _kill_tree(joined.pid)  # the machine dies: its raylet and workers with it
            launch.wait(600)
        output = launch.stdout.read()  # type: ignore[union-attr]
    assert launch.returncode == 0, output
    assert "lost" in output and "will run again with the same params" in output
    children = _children(head, "joins-dies")
    finished = [c for c in children if c.info.status == "FINISHED"]
    lost = [c for c in children if c.info.status == "FAILED"]
    assert len(lost) == 1
    # the lost trial ran on the agent that joined (its node's records died with it: the trial says where it started)
    assert (work / "out" / f"started-{lost[0].data.params['i']}").read_text().split() == ["joined", "first"]
    # every grid point finished exactly once; the lost attempt is recorded as such, and ran again
    assert sorted(int(c.data.params["i"]) for c in finished) == [0, 1, 2, 3]
    assert lost[0].data.tags["sweeps.lost"] == "true"
    assert [c.data.params["i"] for c in finished if "sweeps.retry_of" in c.data.tags] == [lost[0].data.params["i"]]
    assert all(c.info.status != "RUNNING" for c in children)
    first = next(p for p in _probes(work) if p["i"] == 0)
    assert first["start"] < joined_at < first["end"]  # the first trial was running when the agent joined


def test_an_agent_without_the_right_token_fails_with_a_clear_message(head: Head, tmp_path: Path) -> None:
    wrong = tmp_path / "token"
    wrong.write_text("not-the-cluster-token\n")
    argv = [*SWEEPS, "agent", "--address", head.address, "--cpus", "1"]
    out = subprocess.run([*argv, "--token-file", str(wrong)], capture_output=True, text=True, timeout=300, env=_env(),
                         stdin=subprocess.DEVNULL)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip() == (f"the Ray cluster at {head.address} refused the token from {wrong}: it is not the "
                                  "head's token (the head's is ~/.ray/auth_token on the head machine)")
    env = {k: v for k, v in _env().items() if not k.startswith("RAY_AUTH_TOKEN")}
    env["HOME"] = str(tmp_path / "empty-home")
    missing = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    assert missing.returncode == 2
    assert missing.stderr.strip().startswith("no Ray cluster token: the head prints where its token is")
    # a launch (as a resume) with a token the head refuses: the same one line, before anything is recorded
    work = _sweep_dir(tmp_path, "wrong-token", "{cpus: 1}", 1, 0.1)
    launch = _launch(head, work, env={"RAY_AUTH_TOKEN": "not-the-cluster-token"})
    assert launch.returncode == 2 and launch.stderr.strip() == (
        f"the Ray cluster at {head.address} refused the token from $RAY_AUTH_TOKEN: it is not the head's token "
        "(the head's is ~/.ray/auth_token on the head machine)")
    assert not (work / ".sweeps").exists()


def test_the_tracking_server_asks_for_mlflows_credentials_and_a_launch_without_them_is_one_line(head: Head,
                                                                                                tmp_path: Path) -> None:
    import urllib.error
    import urllib.request

    from mlflow import MlflowClient

    credentials = Path.home() / ".mlflow" / "credentials"
    assert credentials.stat().st_mode & 0o777 == 0o600  # written by the head, where MLflow's clients look
    request = urllib.request.Request(head.uri + "/api/2.0/mlflow/experiments/search", data=b'{"max_results": 1}',
                                     headers={"Content-Type": "application/json"}, method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 401  # no credentials, no runs
    assert MlflowClient(head.uri).search_experiments()  # MLflow's client finds ~/.mlflow/credentials itself
    # the server runs without MLflow's job runner and its huey consumers (GenAI jobs, never submitted by sweeps)
    started = {" ".join(p.cmdline()): p for p in psutil.Process(head.pid).children(recursive=True)}
    assert any("mlflow server" in c for c in started)
    assert not [c for c in started if "huey" in c or "mlflow.server.jobs" in c]
    # and checks a login once a minute per worker, not at each request (MLflow's auth_cache_ttl_seconds)
    server = next(p for c, p in started.items() if "mlflow server" in c)
    ini = configparser.ConfigParser()
    assert ini.read(server.environ()["MLFLOW_AUTH_CONFIG_PATH"])
    assert ini.getint("mlflow", "auth_cache_ttl_seconds") == 60
    work = _sweep_dir(tmp_path, "wrong-login", "{cpus: 1}", 1, 0.1)
    argv = [*SWEEPS, "launch", "s.yaml", "--address", head.address, "--tracking-uri", head.uri]
    wrong = subprocess.run(argv, cwd=work, env={**_env(), "MLFLOW_TRACKING_USERNAME": "admin",
                                                "MLFLOW_TRACKING_PASSWORD": "not-the-password"},
                           capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert wrong.returncode == 2 and wrong.stderr.strip() == (
        f"the MLflow tracking server at {head.uri} refused the credentials from $MLFLOW_TRACKING_USERNAME/"
        "$MLFLOW_TRACKING_PASSWORD (401): copy the head's ~/.mlflow/credentials to this machine's ~/.mlflow/credentials "
        "(beside ~/.ray/auth_token), or set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD")
    assert not (work / ".sweeps").exists()
