"""The `sweeps` command line.

The one place that configures logging and reads the environment. Imports of
anything heavy happen inside the commands, so `sweeps --help` stays fast and
imports none of ray, mlflow, wandb or torch.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from .errors import ConfigError, SweepsError

logger = logging.getLogger(__name__)


class _Group(click.Group):
    """Prints user errors in one line each and exits 2; --debug shows the traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SweepsError as exc:
            if ctx.meta.get("sweeps.debug"):
                raise
            click.echo(str(exc) if isinstance(exc, ConfigError) else f"error: {exc}", err=True)
            ctx.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.version_option(package_name="sweeps-orchestrator", prog_name="sweeps")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Hyperparameter sweeps: W&B sweep files, Optuna search, Ray workers, MLflow records."""
    ctx.meta["sweeps.debug"] = debug
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--strict", is_flag=True, help="Treat warnings as errors.")
def validate(file: str, strict: bool) -> None:
    """Check a search-space FILE and summarise what it searches.

    Every problem is reported at once as FILE:LINE: parameter: message.
    Exit code 2 when the file is invalid.
    """
    from .space import load_spec

    spec = load_spec(file, strict=strict)
    _print_summary(spec)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--trials", type=click.IntRange(min=1), help="Stop after this many trials (overrides run_cap / budget.trials).")
@click.option("--parallel", type=click.IntRange(min=1), help="Trials at once (default: as many as the cluster holds).")
@click.option("--seed", type=click.IntRange(min=0), help="The sweep's seed (default: the file's, else random and recorded).")
@click.option("--name", help="The sweep's name (default: the file's name, else the file's stem).")
@click.option("--address", help="Ray cluster to join, HEAD:PORT (default: start a local Ray).")
@click.option("--tracking-uri", help="MLflow tracking URI (default: the file's, $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db).")
@click.option("--experiment", help="MLflow experiment (default: the file's, else the sweep's name).")
@click.option("--wandb-mode", type=click.Choice(["offline", "online", "disabled"]), help="W&B mirror (default: the file's, $WANDB_MODE, else offline).")
@click.option("--state-dir", type=click.Path(file_okay=False), default=".sweeps", show_default=True, help="Where sweeps keep their state.")
@click.option("--strict", is_flag=True, help="Treat warnings in FILE as errors.")
@click.option("--no-progress", is_flag=True, help="No live view (plain lines).")
@click.option("--agents-only", is_flag=True, help="Run trials only on nodes attached with `sweeps agent`.")
@click.option("--no-tracking", is_flag=True,
              help="Neither MLflow nor W&B: results only in the state directory (same as --tracking-uri none --wandb-mode disabled).")
@click.option("--local", is_flag=True, help="Run trials in threads of this process, without Ray (CPU trials; quick runs, debugging).")
@click.option("--deterministic", is_flag=True, help="Run trials in synchronous batches of --parallel, so that a "
              "parallel model-based sweep proposes the same configs again with the same file and seed.")
def launch(file: str, trials: int | None, parallel: int | None, seed: int | None, name: str | None,
           address: str | None, tracking_uri: str | None, experiment: str | None, wandb_mode: str | None,
           state_dir: str, strict: bool, no_progress: bool, agents_only: bool, no_tracking: bool, local: bool,
           deterministic: bool) -> None:
    """Run a sweep of FILE: trials on Ray, each an MLflow child run, mirrored to W&B."""
    import os
    import sys
    from pathlib import Path

    from .controller import Controller, LaunchOptions
    from .space import load_spec

    if no_tracking and (tracking_uri or wandb_mode not in (None, "disabled")):
        raise click.UsageError("--no-tracking turns MLflow and W&B off; drop --tracking-uri / --wandb-mode, or --no-tracking")
    if no_tracking:
        tracking_uri, wandb_mode = "none", "disabled"
    _check_local(local, address, agents_only)
    loaded = load_spec(file, strict=strict)
    spec, console = _prepare(loaded, agents_only, address,
                             tracking_uri or loaded.tracking.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"))
    for w in spec.warnings:
        console.print(str(w), markup=False, style="yellow", soft_wrap=True)
    opts = LaunchOptions(
        trials=trials, parallel=parallel, seed=seed, name=name, address=address,
        tracking_uri=tracking_uri or (None if spec.tracking.tracking_uri else os.environ.get("MLFLOW_TRACKING_URI")),
        experiment=experiment,
        wandb_mode=wandb_mode or (None if spec.tracking.wandb_mode else os.environ.get("WANDB_MODE")),
        wandb_dir=os.environ.get("WANDB_DIR"), state_dir=Path(state_dir),
        progress=not no_progress and console.is_terminal, executor="local" if local else "ray",
        deterministic=deterministic,
    )
    controller = Controller(spec, opts, on_event=lambda msg: console.print(msg, markup=False, soft_wrap=True))
    click.echo(f"sweep id: {controller.sweep_id}")
    sys.stdout.flush()
    _run_and_report(controller, state_dir)


def _check_local(local: bool, address: str | None, agents_only: bool) -> None:
    if local and (address or agents_only):
        raise click.UsageError("--local runs trials in this process, without Ray; drop --address / --agents-only, or --local")


def _prepare(spec: Any, agents_only: bool, address: str | None, tracking_uri: str | None = None) -> tuple[Any, Any]:
    """What launch, resume and reproduce set up alike: a head and tracking server that answer (else one
    line, at once), the spec's overrides, the environment Ray and MLflow read, and the console for progress."""
    import dataclasses
    import os

    from rich.console import Console

    from .cluster import check_database, check_head, check_token, check_tracking

    if address:
        check_head(address)
        check_token(address, dict(os.environ))
    if tracking_uri:
        check_tracking(tracking_uri)
        check_database(tracking_uri)

    if agents_only:
        spec = dataclasses.replace(spec, resources=dataclasses.replace(spec.resources, agents_only=True))
    if address:
        # clusters started with `ray start` (and `sweeps head`) use token authentication
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    # MLflow's INFO lines (creating tables...) and run banners would break up the live view
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return spec, Console(stderr=True, highlight=False)


def _run_and_report(controller: Any, state_dir: str) -> None:
    import sys

    summary = controller.run()
    _print_launch_summary(summary)
    rec = summary.record
    resume = f"sweeps resume {summary.id}" + (f" --state-dir {state_dir}" if state_dir != ".sweeps" else "")
    if rec.status == "killed":
        click.echo(f"stopped before its budget; continue it with: {resume}")
        sys.exit(130)
    if rec.status == "failed":
        click.echo(f"the sweep stopped: {rec.stop_reason}; after fixing the cause, continue it with: {resume}", err=True)
        sys.exit(1)


@main.command()
@click.argument("sweep")
@click.option("--state-dir", type=click.Path(file_okay=False), default=".sweeps", show_default=True)
@click.option("--trials", type=click.IntRange(min=1), help="A new trial budget (counting the trials already done).")
@click.option("--parallel", type=click.IntRange(min=1), help="Trials at once.")
@click.option("--address", help="Ray cluster to join, HEAD:PORT (default: start a local Ray).")
@click.option("--tracking-uri", help="MLflow tracking URI (default: the sweep's).")
@click.option("--wandb-mode", type=click.Choice(["offline", "online", "disabled"]), help="W&B mirror (default: the sweep's).")
@click.option("--agents-only", is_flag=True, help="Run trials only on nodes attached with `sweeps agent`.")
@click.option("--no-progress", is_flag=True, help="No live view (plain lines).")
@click.option("--local", is_flag=True, help="Run trials in threads of this process, without Ray (CPU trials).")
def resume(sweep: str, state_dir: str, trials: int | None, parallel: int | None, address: str | None,
           tracking_uri: str | None, wandb_mode: str | None, agents_only: bool, no_progress: bool, local: bool) -> None:
    """Continue SWEEP where it stopped: finished trials are kept, trials that were
    running run again, the same MLflow parent run goes on, the budget counts what was done."""
    import os
    from pathlib import Path

    from .controller import Controller, LaunchOptions
    from .state import load_for_resume

    _check_local(local, address, agents_only)
    spec, record = load_for_resume(Path(state_dir), sweep)
    spec, console = _prepare(spec, agents_only, address, tracking_uri or record.tracking_uri)
    opts = LaunchOptions(trials=trials, parallel=parallel, address=address, tracking_uri=tracking_uri,
                         wandb_mode=wandb_mode, wandb_dir=os.environ.get("WANDB_DIR"), state_dir=Path(state_dir),
                         progress=not no_progress and console.is_terminal, executor="local" if local else "ray")
    controller = Controller(spec, opts, resume=record,
                            on_event=lambda msg: console.print(msg, markup=False, soft_wrap=True))
    # a sweep its time budget stopped goes on for another time budget; one that ran to its end does not
    if not trials and record.status == "finished" and record.stop_reason != "time budget":
        if record.stop_reason == "trial budget":
            raise ConfigError(f"sweep {sweep} finished its budget of {record.trials} trials; "
                              "pass --trials N to run more")
        raise ConfigError(f"sweep {sweep} already finished: {record.stop_reason}")
    _run_and_report(controller, state_dir)


def _print_launch_summary(summary: Any) -> None:
    from .live import said_counts

    rec = summary.record
    click.echo(f"sweep {summary.id} {rec.status}: {said_counts(summary.counts)} ({rec.stop_reason or 'done'})")
    if summary.best_value is not None:
        click.echo(f"best {rec.metric} ({rec.goal}): {summary.best_value:.6g} in trial {summary.best_trial}")
        for k, v in (summary.best_params or {}).items():
            click.echo(f"  {k} = {v!r}")
        if summary.best_run_id:
            click.echo(f"best MLflow run: {summary.best_run_id} (parent run {rec.parent_run_id}, experiment '{rec.experiment}')")
    if rec.tracking_uri == "none":
        click.echo(f"MLflow off: trials.csv and the plots are in {summary.state_dir}")
    else:
        click.echo(f"look at it: mlflow ui --backend-store-uri {rec.tracking_uri}" if rec.tracking_uri.startswith("sqlite")
                   else f"look at it: {rec.tracking_uri}")
    if rec.wandb_mode == "offline":
        click.echo("W&B offline runs: ./wandb (upload with: wandb sync --sync-all)")
    click.echo(f"trials: sweeps status {summary.id}; the best model: sweeps best {summary.id}; "
               f"a page of plots: sweeps report {summary.id}")


@main.command()
@click.argument("sweep")
@click.option("--state-dir", type=click.Path(file_okay=False), default=".sweeps", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option("--trial", type=click.IntRange(min=0), help="This trial instead of the best one.")
@click.option("--download", type=click.Path(file_okay=False), help="Copy the trial's model(s) and files into DIR.")
def best(sweep: str, state_dir: str, as_json: bool, trial: int | None, download: str | None) -> None:
    """The best trial of SWEEP: its value, params, MLflow run, model URI, W&B run, and how to load its model."""
    import json
    from pathlib import Path

    from . import tracking
    from .status import best_trial

    if download is not None:
        _writable(Path(download))
    info = best_trial(Path(state_dir), sweep, trial)
    if download is not None:
        for name, model_uri in info["models"].items():
            tracking.download(info["tracking_uri"], model_uri, str(Path(download) / name))
        if info["run_id"]:
            tracking.download_files(info["tracking_uri"], info["run_id"], download)
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    _print_best(info, download)


def _writable(path: Any) -> None:
    import tempfile

    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ConfigError(f"cannot write to {path}: {exc.strerror or exc}") from None


def _print_best(info: dict[str, Any], download: str | None) -> None:
    click.echo(f"best trial of sweep {info['sweep']} ({info['name']}): trial {info['trial']}, "
               f"{info['metric']} = {info['value']:.6g} ({info['goal']})")
    for k, v in info["params"].items():
        click.echo(f"  {k} = {v!r}")
    click.echo(f"MLflow run: {info['run_id']} ({info['tracking_uri']})")
    if info["wandb_run_id"]:
        click.echo(f"W&B run: {info['wandb_run_id']} ({info['wandb_mode']})")
    if not info["models"]:
        click.echo("no model kept: call report.model(model) in the trainer (or MLflow's own log_model) to keep one")
    for name, model_uri in info["models"].items():
        click.echo(f"model {name}: {model_uri}")
    if info["model_uri"]:
        click.echo(f"""load it:
  import mlflow
  mlflow.set_tracking_uri("{info['tracking_uri']}")
  model = mlflow.pyfunc.load_model("{info['model_uri']}")   # model.predict(...)
promote it: sweeps promote {info['sweep']} --model NAME""")
    if download:
        click.echo(f"copied to {download}: " + ", ".join([*info["models"], "files"]))


@main.command()
@click.argument("sweep")
@click.option("--model", "name", required=True, help="The registered model's name in MLflow's Model Registry.")
@click.option("--alias", default="champion", show_default=True, help="The alias the new version gets.")
@click.option("--trial", type=click.IntRange(min=0), help="This trial's model instead of the best trial's.")
@click.option("--state-dir", type=click.Path(file_okay=False), default=".sweeps", show_default=True)
def promote(sweep: str, name: str, alias: str, trial: int | None, state_dir: str) -> None:
    """Register the model of SWEEP's best trial (or --trial N) in MLflow's Model Registry with an alias."""
    from pathlib import Path

    from . import tracking
    from .status import best_trial

    info = best_trial(Path(state_dir), sweep, trial)
    model_uri = info["model_uri"]
    if model_uri is None:
        raise ConfigError(f"trial {info['trial']} of sweep {info['sweep']} kept no model: call report.model(model) in "
                          "the trainer (or MLflow's own mlflow.<flavor>.log_model) to keep one")
    tags = {"sweeps.sweep_id": info["sweep"], "sweeps.trial": str(info["trial"]), "sweeps.metric": info["metric"],
            "sweeps.value": repr(info["value"]), "sweeps.run_id": info["run_id"]}
    version, created = tracking.register(info["tracking_uri"], model_uri, name, alias, tags)
    tracking.set_tags(info["tracking_uri"], info["parent_run_id"], {"sweeps.promoted": f"{name}/{version.version}@{alias}"})
    click.echo(f"{'registered' if created else 'already registered'}: {name} version {version.version} "
               f"(trial {info['trial']}, {info['metric']} = {info['value']:.6g}) as {name}@{alias}")
    click.echo(f'load it: mlflow.pyfunc.load_model("models:/{name}@{alias}")')
    if info["wandb_mode"] != "online" or not info["wandb_run_id"]:
        click.echo(f"W&B: not linked to the W&B registry: the sweep's W&B runs are {info['wandb_mode']} "
                   "(upload them with `wandb sync`, then link the model artifact in W&B)")
        return
    from .mirror import link_model

    try:
        where = link_model(info["wandb_entity"], info["wandb_project"] or info["name"], info["wandb_run_id"], name, alias)
    except Exception as exc:  # noqa: BLE001 - the MLflow registry has the version: say what W&B refused
        click.echo(f"W&B: not linked to the W&B registry: {type(exc).__name__}: {exc}")
        return
    click.echo(f"W&B: linked to the W&B registry as {where}")


@main.command()
@click.argument("sweep")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="The HTML file to write (default: report.html beside the sweep's trials.csv).")
@click.option("--state-dir", type=click.Path(file_okay=False), default=".sweeps", show_default=True)
def report(sweep: str, output: str | None, state_dir: str) -> None:
    """One self-contained HTML page of SWEEP (opens offline): best so far, parallel coordinates, parameter
    importances, slices, learning curves, a sortable trial table, the best config as YAML. Also logged on the
    sweep's MLflow parent run."""
    from pathlib import Path

    from . import tracking
    from .report import MAX_CURVES, build
    from .state import SweepRecord, open_study, sweep_dir
    from .status import load

    directory = sweep_dir(Path(state_dir), sweep)
    path = Path(output) if output else directory / "report.html"
    _writable(path.resolve().parent)
    record = SweepRecord.load(directory)
    study = open_study(directory, record.id, record.goal, create=False)
    frame = load(sweep, state_dir)
    runs = {r: n for n, r in zip(frame["number"], frame["mlflow_run_id"]) if r} if len(frame) else {}
    found = tracking.histories(record.tracking_uri, list(runs)[:MAX_CURVES], record.metric)
    curves = {runs[r]: points for r, points in found.items() if points}
    if not tracking.enabled(record.tracking_uri):  # the study's own record of the judged metric
        curves = {t.number: sorted(t.intermediate_values.items()) for t in study.get_trials(deepcopy=False)
                  if t.intermediate_values}
    path.write_text(build(study, record, frame, curves))
    if record.parent_run_id and tracking.enabled(record.tracking_uri):
        tracking.log_artifact(record.tracking_uri, record.parent_run_id, str(path))
    click.echo(f"report of sweep {record.id}: {path} (open it in a browser; also on the MLflow parent run)")


@main.command()
@click.argument("sweep_ids", metavar="SWEEP SWEEP [SWEEP...]", nargs=-1, required=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="The HTML file to write (default: compare-<ids>.html here).")
@click.option("--state-dir", type=click.Path(file_okay=False), default=".sweeps", show_default=True)
def compare(sweep_ids: tuple[str, ...], output: str | None, state_dir: str) -> None:
    """One self-contained HTML page of several sweeps of one metric: their best-so-far curves on one plot,
    a row each, and their best configs side by side."""
    from pathlib import Path

    from .report import compare as page
    from .state import SweepRecord, open_study, sweep_dir

    if len(set(sweep_ids)) < 2:
        raise ConfigError("compare needs two sweeps or more: sweeps compare SWEEP SWEEP [SWEEP...] "
                          "(`sweeps status` lists them)")
    found = []
    for sweep in dict.fromkeys(sweep_ids):
        directory = sweep_dir(Path(state_dir), sweep)
        record = SweepRecord.load(directory)
        found.append((record, open_study(directory, record.id, record.goal, create=False)))
    first = found[0][0]
    for record, _ in found[1:]:
        if (record.metric, record.goal) != (first.metric, first.goal):
            raise ConfigError(f"sweeps {first.id} ({first.metric}, {first.goal}) and {record.id} ({record.metric}, "
                              f"{record.goal}) optimize different metrics: compare sweeps of one metric and goal")
    path = Path(output) if output else Path(f"compare-{'-'.join(r.id for r, _ in found)}.html")
    _writable(path.resolve().parent)
    path.write_text(page(found))
    click.echo(f"{len(found)} sweeps compared: {path} (open it in a browser)")


@main.command()
@click.argument("run_id", required=False)
@click.option("--sweep", help="The sweep whose trial to run again (with --best or --trial N instead of RUN_ID).")
@click.option("--best", is_flag=True, help="The sweep's best trial.")
@click.option("--trial", type=click.IntRange(min=0), help="The sweep's trial N.")
@click.option("--tracking-uri", help="Where RUN_ID is recorded (default: the sweep's, $MLFLOW_TRACKING_URI, "
              "else sqlite:///mlflow.db).")
@click.option("--tolerance", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="The relative difference a metric may have and still match (0: to the last digit).")
@click.option("--strict", is_flag=True, help="Refuse to run when the code, packages, Python or data differ from the record.")
@click.option("--address", help="Ray cluster to run it on, HEAD:PORT (default: a local Ray).")
@click.option("--local", is_flag=True, help="Run it in a thread of this process, without Ray (CPU trials).")
@click.option("--wandb-mode", type=click.Choice(["offline", "online", "disabled"]),
              help="W&B mirror (default: the sweep file's, $WANDB_MODE, else offline).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option("--state-dir", type=click.Path(file_okay=False), default=".sweeps", show_default=True)
def reproduce(run_id: str | None, sweep: str | None, best: bool, trial: int | None, tracking_uri: str | None,
              tolerance: float, strict: bool, address: str | None, local: bool, wandb_mode: str | None,
              as_json: bool, state_dir: str) -> None:
    """Run a recorded trial again (same config, seed and seeding) and compare every metric, step by step.
    Before it runs, says what differs from the record: git commit, uncommitted changes, the trainer's file,
    packages, Python, data. Exit 0: the metrics match; 1: they differ; 2: bad input."""
    import os
    from pathlib import Path

    from . import reproduce as rp
    from . import tracking

    _check_local(local, address, False)
    if (run_id is None) == (sweep is None) or (sweep is not None and run_id is None and best == (trial is not None)):
        raise click.UsageError("name the trial: RUN_ID (an MLflow run id), or --sweep SWEEP with --best or --trial N")
    workdir = Path.cwd()
    if sweep is not None:
        from .state import SweepRecord, sweep_dir
        from .status import best_trial, trial_run_id

        record = SweepRecord.load(sweep_dir(Path(state_dir), sweep))
        uri = tracking.absolute_uri(tracking_uri, workdir) if tracking_uri else record.tracking_uri
        if run_id is None:
            run_id = best_trial(Path(state_dir), sweep)["run_id"] if best else trial_run_id(Path(state_dir), sweep, trial)
    else:
        uri = tracking.absolute_uri(tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"), workdir)
    if not tracking.enabled(uri):
        raise ConfigError("reproduce reads the trial's MLflow record: this sweep ran with --no-tracking")
    _prepare(None, False, address, uri)
    rec = rp.load(uri, run_id)
    _check_code(rec, workdir)
    before = rp.differences(rec, workdir)
    say = (lambda text: None) if as_json else click.echo
    say(f"reproducing trial {rec.tags.get('sweeps.trial')} of sweep {rec.tags.get('sweeps.sweep_id')} (MLflow run "
        f"{rec.run_id}): {rec.what}, seed {rec.seed}")
    for d in before:
        say(f"  differs: {d.text}")
    if before and strict:
        click.echo(f"--strict: {len(before)} difference(s) from the record; nothing was run", err=True)
        raise SystemExit(1)
    outcome = rp.reproduce(rec, workdir, tolerance=tolerance, address=address, local=local, wandb_mode=wandb_mode,
                           wandb_dir=Path(os.environ.get("WANDB_DIR") or workdir), before=before, say=say)
    if as_json:
        import json

        click.echo(json.dumps({
            "run_id": rec.run_id, "new_run_id": outcome.run_id, "matches": outcome.matches, "state": outcome.state,
            "error": outcome.error, "compared": outcome.compared,
            "mismatches": [vars(m) for m in outcome.mismatches],
            "differences": [{"kind": d.kind, "text": d.text} for d in outcome.differences()]}, indent=2))
    else:
        _print_reproduced(outcome, tolerance)
    if not outcome.matches:
        raise SystemExit(1)


def _check_code(rec: Any, workdir: Any) -> None:
    """Exit 2 when the trial's trainer module or program is not found from here."""
    import importlib.util
    import sys

    if rec.program is not None:
        if not (workdir / rec.program[0]).is_file():
            raise ConfigError(f"program {rec.program[0]} of run {rec.run_id} is not in {workdir}: run `sweeps reproduce` "
                              "in the directory the sweep was launched from")
        return
    module = rec.trainer.partition(":")[0]
    sys.path.insert(0, str(workdir))
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        found = None
    finally:
        sys.path.remove(str(workdir))
    if found is None:
        raise ConfigError(f"trainer module {module} of run {rec.run_id} is not importable from {workdir}: run "
                          "`sweeps reproduce` in the directory the sweep was launched from")


def _print_reproduced(outcome: Any, tolerance: float) -> None:
    from rich.console import Console
    from rich.table import Table

    if outcome.matches:
        how = "exactly" if tolerance == 0 else f"within a relative {tolerance:g}"
        click.echo(f"reproduced {how}: {outcome.compared} values of {len(outcome.record.run.data.metrics)} metrics match "
                   f"(new MLflow run {outcome.run_id}, {outcome.duration_s:.1f} s)")
        return
    if outcome.state != "COMPLETE":
        click.echo(f"the rerun ended {outcome.state}: {outcome.error} (new MLflow run {outcome.run_id})")
    if outcome.mismatches:
        table = Table("metric", "first step that differs", "recorded", "now", "difference", "steps that differ",
                      title=f"not reproduced (new MLflow run {outcome.run_id})", box=None)
        for m in outcome.mismatches:
            gap = f"{m.now - m.recorded:+.6g}" if m.recorded is not None and m.now is not None else "missing"
            table.add_row(m.metric, str(m.step), _num(m.recorded), _num(m.now), gap, str(m.count))
        Console(soft_wrap=True, width=200).print(table)
    found = outcome.differences()
    if found:
        click.echo("what differs from the record, most likely cause first:")
        for d in found:
            click.echo(f"  {d.kind}: {d.text}")
    elif outcome.mismatches:
        gpu = " or its GPU" if outcome.record.tags.get("sweeps.gpu.name") else ""
        click.echo(f"nothing recorded differs (code, packages, Python, data, device): the trainer{gpu} is not "
                   "deterministic. Seeded torch on a CPU repeats itself; on a GPU, call "
                   "torch.use_deterministic_algorithms(True) (with CUBLAS_WORKSPACE_CONFIG=:4096:8), or pass "
                   "--tolerance to accept a relative difference")


def _num(v: float | None) -> str:
    return "missing" if v is None else f"{v:.10g}"


@main.command()
@click.argument("sweep")
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet", "json"]), default="csv", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="The file to write (default: standard output; "
              "parquet needs one).")
@click.option("--state-dir", type=click.Path(file_okay=False), default=".sweeps", show_default=True)
def export(sweep: str, fmt: str, output: str | None, state_dir: str) -> None:
    """SWEEP's trials as a table: params, final metrics, state, duration, MLflow and W&B run ids (one row a trial).
    In Python, sweeps.load(SWEEP) gives the same pandas DataFrame."""
    from pathlib import Path

    from .status import load

    if output is None and fmt == "parquet":
        raise ConfigError("--format parquet writes a binary file: name it with -o FILE")
    if output is not None:
        _writable(Path(output).resolve().parent)
    frame = load(sweep, state_dir)
    if fmt == "parquet":
        frame.to_parquet(output, index=False)
    else:
        text = frame.to_json(orient="records", indent=2) + "\n" if fmt == "json" else frame.to_csv(index=False)
        if output is None:
            click.echo(text, nl=False)
            return
        Path(output).write_text(text)
    click.echo(f"{len(frame)} trials of sweep {sweep} written to {output}", err=True)


@main.command()
@click.argument("sweep", required=False)
@click.option("--state-dir", type=click.Path(file_okay=False), default=".sweeps", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def status(sweep: str | None, state_dir: str, as_json: bool) -> None:
    """List the sweeps in the state directory, or the trials of SWEEP."""
    import json
    from pathlib import Path

    from .status import list_sweeps, sweep_trials

    root = Path(state_dir)
    if sweep is None:
        rows = list_sweeps(root)
        if as_json:
            click.echo(json.dumps(rows, indent=2))
            return
        from rich.console import Console
        from rich.table import Table

        table = Table("sweep", "name", "status", "method", "metric", "trials", "best", "created", box=None)
        for r in rows:
            table.add_row(r["id"], r["name"], r["status"], r["method"], f"{r['metric']} ({r['goal']})",
                          f"{r['complete']}/{r['trials_total']}", "" if r["best_value"] is None else f"{r['best_value']:.6g}",
                          r["created"])
        Console().print(table if rows else f"no sweeps in {root}")
        return
    info = sweep_trials(root, sweep)
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    s = info["sweep"]
    console.print(f"sweep {s['id']} ({s['name']}): {s['status']}, {s['method']}, {s['metric']} ({s['goal']})")
    table = Table("", "trial", "state", "value", "params", "duration", "MLflow run", box=None)
    best = info["best_trial"]
    for t in info["trials"]:
        params = ", ".join(f"{k}={v}" for k, v in t["params"].items())
        table.add_row("*" if t["number"] == best else "", str(t["number"]), t["state"],
                      "" if t["value"] is None else f"{t['value']:.6g}", params,
                      "" if t["duration_s"] is None else f"{t['duration_s']:.1f}s", t["mlflow_run_id"] or "")
    console.print(table)
    if best is not None:
        console.print(f"* best: trial {best}, {s['metric']} = {info['best_value']:.6g}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind and advertise (the head's IP on the cluster network, or 0.0.0.0).")
@click.option("--port", default=6379, show_default=True, help="Ray's port.")
@click.option("--mlflow-port", default=5000, show_default=True, help="The MLflow tracking server's port.")
@click.option("--backend-store-uri", default="sqlite:///mlflow.db", show_default=True, envvar="SWEEPS_BACKEND_STORE_URI",
              help="MLflow's database (PostgreSQL for real clusters: postgresql://user:pw@host/db; "
              "or $SWEEPS_BACKEND_STORE_URI, which keeps the password off the command line).")
@click.option("--artifacts-destination", default="./mlartifacts", show_default=True, envvar="SWEEPS_ARTIFACTS_DESTINATION",
              help="Where the server keeps the artifacts it receives over HTTP: a directory, or an object store "
              "(s3://bucket/path, gs://, ...; or $SWEEPS_ARTIFACTS_DESTINATION).")
@click.option("--cpus", type=float, help="CPUs of the head that may run trials (default: all; 0 keeps trials off the head).")
@click.option("--gpus", type=float, help="GPUs of the head that may run trials (default: detected).")
@click.option("--auth-db", default="sqlite:///basic_auth.db", show_default=True,
              help="The database of the MLflow server's users (MLflow's basic-auth app).")
@click.option("--no-auth", is_flag=True, help="An MLflow server without authentication: anyone who reaches its port "
              "can read, change and delete every run.")
def head(host: str, port: int, mlflow_port: int, backend_store_uri: str, artifacts_destination: str,
         cpus: float | None, gpus: float | None, auth_db: str, no_auth: bool) -> None:
    """Start a Ray head and an MLflow tracking server (with MLflow's basic authentication) for a cluster;
    Ctrl-C stops both."""
    import os
    import sys
    from pathlib import Path

    from . import tracking
    from .cluster import check_database, logdir_for, run_until_signal, start_head

    check_database(backend_store_uri)
    logs = logdir_for("head")
    auth = None if no_auth else tracking.absolute_uri(auth_db, Path.cwd())
    h = start_head(host, port, mlflow_port, backend_store_uri, artifacts_destination, cpus, gpus, logs, dict(os.environ),
                   auth_db=auth)
    click.echo(f"Ray head:      {h.ray_address}")
    click.echo(f"MLflow server: {h.tracking_uri}  (database {backend_store_uri}, artifacts in {artifacts_destination})")
    click.echo(f"cluster token: {h.token_path}  (copy it to each GPU node's ~/.ray/auth_token, or pass --token-file)")
    if h.credentials is not None:
        click.echo(f"MLflow login:  {h.credentials}  (copy it to each machine's ~/.mlflow/credentials, beside the token)")
    else:
        click.echo("warning: --no-auth: anyone who reaches the MLflow port can read, change and delete every run", err=True)
    click.echo(f"attach a GPU node:  sweeps agent --address {h.ray_address}")
    click.echo(f"launch a sweep:     sweeps launch FILE --address {h.ray_address} --tracking-uri {h.tracking_uri}")
    click.echo(f"logs: {logs}; Ctrl-C stops the head")
    sys.stdout.flush()
    code = run_until_signal([h.ray, h.mlflow], h.stop)
    click.echo("head stopped")
    sys.exit(code)


@main.command(context_settings={"ignore_unknown_options": True})
@click.option("--address", required=True, help="The Ray head, HOST:PORT.")
@click.option("--gpus", type=float, help="GPUs to offer (default: every GPU Ray detects).")
@click.option("--cpus", type=float, help="CPUs to offer (default: all).")
@click.option("--token-file", type=click.Path(dir_okay=False), help="The cluster's token (default: $RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token).")
@click.argument("ray_args", nargs=-1, type=click.UNPROCESSED)
def agent(address: str, gpus: float | None, cpus: float | None, token_file: str | None, ray_args: tuple[str, ...]) -> None:
    """Attach this machine to a sweep cluster; its GPUs then run trials. Ctrl-C leaves.

    Extra arguments after -- go to `ray start` (e.g. fixed ports: -- --node-manager-port 6380).
    """
    import os
    import sys

    from .cluster import AGENT_RESOURCE, detected_gpus, logdir_for, run_until_signal, start_agent

    logs = logdir_for("agent")
    a = start_agent(address, cpus, gpus, token_file, logs, dict(os.environ), list(ray_args))
    offered = f"{gpus:g}" if gpus is not None else f"{detected_gpus()} (detected)"
    click.echo(f"joined {address} as an agent (resource {AGENT_RESOURCE}): GPUs {offered}, "
               f"CPUs {cpus:g}" if cpus is not None else f"joined {address} as an agent (resource {AGENT_RESOURCE}): "
               f"GPUs {offered}, CPUs all")
    click.echo(f"logs: {logs}; Ctrl-C leaves the cluster")
    sys.stdout.flush()
    code = run_until_signal([a.ray], a.ray.stop)
    click.echo("agent left the cluster")
    sys.exit(code)


def _print_summary(spec: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    metric = f"{spec.metric.name} ({spec.metric.goal})" if spec.metric else "none"
    console.print(f"[bold]{spec.file}[/bold] is valid")
    console.print(f"  method: {spec.method}" + (f" (sampler {spec.sampler.type})" if spec.sampler else ""))
    console.print(f"  metric: {metric}")
    if spec.early_terminate:
        et = spec.early_terminate
        console.print(f"  early_terminate: {et.type} min_iter={et.min_iter} max_iter={et.max_iter} eta={et.eta:g}")
    budget = spec.budget
    parts = [f"{budget.trials} trials" if budget.trials else "", f"{budget.time_s:g} s" if budget.time_s else "",
             f"target {budget.target:g}" if budget.target is not None else ""]
    if any(parts):
        console.print("  budget: " + ", ".join(p for p in parts if p))
    if spec.trainer:
        console.print(f"  trainer: {spec.trainer}")
    elif spec.program:
        console.print(f"  program: {spec.program}" + (f"  command: {' '.join(spec.command)}" if spec.command else ""))
    table = Table(box=None, pad_edge=False)
    table.add_column("parameter", overflow="fold")
    table.add_column("distribution and range")
    table.add_column("when")
    for p in spec.params:
        when = ", ".join(f"{k} in {list(v)!r}" if len(v) > 1 else f"{k} = {v[0]!r}" for k, v in p.when)
        table.add_row(p.name, p.describe(), when)
    console.print(table)
    size = spec.grid_size
    console.print(f"  grid size: {size}" if size is not None else "  grid size: not finite (continuous parameters)")
    for w in spec.warnings:
        console.print(str(w), markup=False, style="yellow", soft_wrap=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
