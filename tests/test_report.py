"""`sweeps report` (sweeps/report.py): one HTML page that opens offline, checked in real headless
Chromium: it renders, holds its plots and logs no JavaScript error."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import warnings

import pytest
import yaml
from click.testing import CliRunner

from sweeps.cli import main


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("Debian's chromium package is missing: .ci/run installs it (apt-get install chromium)")
    pytest.skip("needs Debian's chromium package (apt-get install chromium)")


def _shown(chromium: str, page) -> str:
    """The page's DOM after Chromium ran its scripts; no console message (a JavaScript error) allowed."""
    shown = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
                            "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
                           capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "CONSOLE" not in shown.stderr, [line for line in shown.stderr.splitlines() if "CONSOLE" in line]
    return shown.stdout


def test_the_report_opens_offline_in_chromium_with_its_plots_and_no_javascript_error(local_env) -> None:
    env = local_env
    chromium = _chromium()
    summary = env.launch("""
        name: reported
        method: grid
        metric: {name: loss}
        trainer: sweeps_test_trainers:quadratic
        early_terminate: {type: hyperband, min_iter: 1, eta: 2}
        parameters:
          x: {values: [0.3, 0.5, 0.1, 3.0, 0.4, 5.0]}
          steps: {value: 4}
    """, parallel=1)
    assert summary.counts["PRUNED"] >= 1
    out = CliRunner().invoke(main, ["report", summary.id, "--state-dir", str(env.tmp / ".sweeps")])
    assert out.exit_code == 0, out.output
    page = summary.state_dir / "report.html"  # beside trials.csv
    assert f"report of sweep {summary.id}: {page}" in out.output and (summary.state_dir / "trials.csv").exists()
    text = page.read_text()
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", text)  # nothing to fetch: plotly.js is inlined, it opens offline
    run = env.client().get_run(summary.record.parent_run_id)
    assert "report.html" in [a.path for a in env.client().list_artifacts(run.info.run_id)]

    dom = _shown(chromium, page)
    assert dom.count("js-plotly-plot") >= 5  # each plot drawn: best so far, coordinates, importances, slices, curves
    for title in ("The best so far", "Parallel coordinates", "Parameter importances", "Each parameter", "Learning curves"):
        assert f"<h2>{title}</h2>" in dom
    assert "(stopped early)" in dom  # the early-stopped trials are marked in the curves
    for c in env.runs(summary)[1]:
        assert c.info.run_id in dom  # the trial table names each MLflow run
    best = yaml.safe_load(re.search(r'<pre id="best-config">(.*?)</pre>', text, re.S).group(1).replace("&#x27;", "'"))
    assert best == {"parameters": {"x": {"value": 0.3}, "steps": {"value": 4}}}


def test_a_report_of_an_unknown_sweep_or_to_an_unwritable_place_is_a_one_line_error(local_env) -> None:
    out = CliRunner().invoke(main, ["report", "nope", "--state-dir", str(local_env.tmp / ".sweeps")])
    assert out.exit_code == 2 and "no sweep 'nope' in" in out.output


def test_compare_puts_several_sweeps_of_one_metric_on_one_page(local_env) -> None:
    env = local_env
    chromium = _chromium()
    state = str(env.tmp / ".sweeps")
    one = env.launch("""
        name: coarse
        method: grid
        metric: {name: loss}
        trainer: sweeps_test_trainers:quadratic
        parameters:
          x: {values: [0.9, 0.4, 2.0]}
          steps: {value: 2}
    """, parallel=1)
    two = env.launch("""
        name: fine
        method: grid
        metric: {name: loss}
        trainer: sweeps_test_trainers:quadratic
        parameters:
          x: {values: [0.35, 0.3, 0.5]}
          steps: {value: 3}
    """, parallel=1)
    page = env.tmp / "both.html"
    out = CliRunner().invoke(main, ["compare", one.id, two.id, "-o", str(page), "--state-dir", state])
    assert out.exit_code == 0, out.output
    assert f"2 sweeps compared: {page}" in out.output
    text = page.read_text()
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", text)
    dom = _shown(chromium, page)
    assert dom.count("plotly-graph-div js-plotly-plot") == 1  # drawn: the best-so-far curves of both, on one plot
    assert f"Best Value of coarse ({one.id})" in dom and f"Best Value of fine ({two.id})" in dom  # each line's sweep
    for record in (one.record, two.record):
        assert record.parent_run_id in dom
    configs = {m.group(1): yaml.safe_load(m.group(2).replace("&#x27;", "'"))
               for m in re.finditer(r'<pre class="best-config" data-sweep="(\w+)">(.*?)</pre>', text, re.S)}
    assert configs == {one.id: {"parameters": {"x": {"value": 0.4}, "steps": {"value": 2}}},
                       two.id: {"parameters": {"x": {"value": 0.3}, "steps": {"value": 3}}}}
    differs = re.findall(r'<tr class="differs"><td data-v="(\w+)"', text)
    assert differs == ["x", "steps"]  # both params differ between the best configs

    other = env.launch("""
        name: upside-down
        method: grid
        metric: {name: loss, goal: maximize}
        trainer: sweeps_test_trainers:quadratic
        parameters:
          x: {values: [0.5]}
          steps: {value: 1}
    """, parallel=1)
    for args, said in ((["compare", one.id], "compare needs two sweeps or more"),
                       (["compare", one.id, "nope"], "no sweep 'nope' in"),
                       (["compare", one.id, other.id], f"sweeps {one.id} (loss, minimize) and {other.id} (loss, maximize) "
                                                      "optimize different metrics")):
        out = CliRunner().invoke(main, [*args, "--state-dir", state])
        assert out.exit_code == 2 and said in out.output and len(out.output.strip().splitlines()) == 1, out.output


def test_the_plots_of_a_sweep_with_one_complete_trial_are_drawn_without_a_warning(tmp_path) -> None:
    import optuna

    from sweeps.state import draw_plots

    study = optuna.create_study(storage=None)  # each parameter has one value among the complete trials
    study.optimize(lambda t: t.suggest_float("lr", 1e-4, 1e-1, log=True) + t.suggest_categorical("b", [16, 32]),
                   n_trials=1)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        written = draw_plots(study, tmp_path)
    assert [p.name for p in written] == ["optimization_history.png", "parallel_coordinates.png"]
    assert [str(w.message) for w in said] == []


@pytest.mark.parametrize(("trainer", "values", "title", "said"), [
    ("quadratic", "[0.3]", "Parameter importances", "too small to compute importances"),  # a warning of Optuna's
    ("always_fails", "[0.3, 0.4]", "The best so far", "There are no complete trials."),  # a line Optuna logs
])
def test_what_optuna_says_while_drawing_the_report_is_on_the_page_not_the_terminal(local_env, capfd, trainer, values,
                                                                                    title, said) -> None:
    summary = local_env.launch(f"""
        name: said
        method: grid
        metric: {{name: loss}}
        trainer: sweeps_test_trainers:{trainer}
        parameters:
          x: {{values: {values}}}
          steps: {{value: 2}}
    """, parallel=1)
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        out = CliRunner().invoke(main, ["report", summary.id, "--state-dir", str(local_env.tmp / ".sweeps")])
    assert out.exit_code == 0, out.output
    printed = capfd.readouterr()  # Optuna's log lines go to the process's stderr, not click's
    assert not [w for w in warned if said in str(w.message)] and said not in printed.err + printed.out + out.output
    text = (summary.state_dir / "report.html").read_text()
    note = re.search(rf'<h2>{title}</h2><p class="note">([^<]*)</p>', text)
    assert note and said in note.group(1)
