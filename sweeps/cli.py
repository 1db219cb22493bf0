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
    table = Table("parameter", "distribution and range", "when", box=None, pad_edge=False)
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
