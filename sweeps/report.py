"""`sweeps report`: one self-contained HTML page of what a sweep learned.

Optuna's own plots (plotly figures: best so far, parallel coordinates, parameter importances,
slices), the learning curves of every trial, a sortable table of the trials with their MLflow
run ids, and the best config as YAML. plotly.js is inlined once: the page opens offline.
`sweeps compare`: one such page of several sweeps of one metric.
"""

from __future__ import annotations

import contextlib
import html
import logging
import numbers
from typing import Any, Callable, Iterator

logger = logging.getLogger(__name__)

#: the most trials whose learning curves are drawn (one line each)
MAX_CURVES = 300

_SORT_JS = """
document.querySelectorAll('table.sortable th').forEach(function (th, col) {
  th.addEventListener('click', function () {
    var body = th.closest('table').tBodies[0], rows = Array.from(body.rows);
    var up = th.dataset.order !== 'up'; th.dataset.order = up ? 'up' : 'down';
    rows.sort(function (a, b) {
      var x = a.cells[col].dataset.v, y = b.cells[col].dataset.v, nx = parseFloat(x), ny = parseFloat(y);
      var c = (isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny;
      return up ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""


def build(study: Any, record: Any, frame: Any, curves: dict[int, list[tuple[int, float]]]) -> str:
    """The page: ``study`` (Optuna), ``record`` (the sweep's ``SweepRecord``), ``frame`` (``sweeps.load``'s
    table) and ``curves`` (each trial's objective metric as ``(step, value)``)."""
    sections = [_section(*figure) for figure in _figures(study, record, frame, curves)]
    best = _best_yaml(study)
    return _page(f"sweep {record.id}: {record.name}", f"""
<p>{html.escape(record.method)} search, {html.escape(record.metric)} ({html.escape(record.goal)}), {len(frame)} trials,
status {html.escape(record.status)}; MLflow parent run <code>{html.escape(record.parent_run_id or "none")}</code>
({html.escape(record.tracking_uri)}).</p>
{''.join(sections)}
<h2>The best config</h2><p class="note">to paste back into a search-space file</p><pre id="best-config">{html.escape(best)}</pre>
<h2>Trials</h2><p class="note">click a column to sort</p>{_table(frame)}""")


def compare(sweeps: list[tuple[Any, Any]]) -> str:
    """One page of several sweeps of one metric, each a ``(record, study)``: their best-so-far curves on one
    plot (Optuna's), a summary row each, their best params side by side (the rows that differ marked) and
    each best config as YAML."""
    import pandas as pd
    from optuna import visualization as vis

    metric = sweeps[0][0].metric
    with _optuna_says() as said:
        try:
            fig: Any = vis.plot_optimization_history([study for _, study in sweeps], target_name=metric)
            for trace in fig.data:  # Optuna names each line by its study, the sweep id: add the sweep's name
                for record, _ in sweeps:
                    if trace.name and trace.name.endswith(f" of {record.id}"):
                        trace.name = f"{trace.name[:-len(record.id)]}{record.name} ({record.id})"
        except Exception as exc:  # noqa: BLE001 - e.g. no complete trial in any sweep
            fig = f"not drawn: {exc}"
    rows, configs, yamls = [], {}, []
    for record, study in sweeps:
        trials = study.get_trials(deepcopy=False)
        best = _best(study)
        rows.append({"sweep": record.id, "name": record.name, "method": record.method, "trials": len(trials),
                     "complete": sum(t.state.name == "COMPLETE" for t in trials),
                     "best trial": best.number if best else None, f"best {metric}": best.value if best else None,
                     "status": record.status, "MLflow parent run": record.parent_run_id, "launched": record.created})
        configs[f"{record.name} ({record.id})"] = (best.user_attrs.get("config") or best.params) if best else {}
        yamls.append(f"<h3>{html.escape(record.name)} ({html.escape(record.id)})</h3>"
                     f'<pre class="best-config" data-sweep="{html.escape(record.id)}">{html.escape(_best_yaml(study))}</pre>')
    names = list(dict.fromkeys(k for config in configs.values() for k in config))
    params = pd.DataFrame([{"param": k, **{s: repr(c[k]) if k in c else "" for s, c in configs.items()}} for k in names])
    differ = [len({repr(c.get(k)) for c in configs.values()}) > 1 for k in names]
    ids = ", ".join(record.id for record, _ in sweeps)
    return _page(f"sweeps {ids} compared", f"""
<p>{len(sweeps)} sweeps of {html.escape(metric)} ({html.escape(sweeps[0][0].goal)}).</p>
<h2>The sweeps</h2><p class="note">click a column to sort</p>{_table(pd.DataFrame(rows))}
{_section("The best so far", fig, said())}
<h2>The best configs</h2><p class="note">the best trial's params of each sweep; the rows that differ are marked</p>
{_table(params, marked=differ)}
{''.join(yamls)}""")


def _page(title: str, body: str) -> str:
    from plotly.offline import get_plotlyjs

    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}} table{{border-collapse:collapse;font-size:13px}}
td,th{{padding:3px 8px;border-bottom:1px solid #ddd;text-align:left}} th{{cursor:pointer;background:#f4f4f4}}
tr.differs{{background:#fff4d6}} pre{{background:#f6f6f6;padding:1em}} .note{{color:#777}}</style>
<script>{get_plotlyjs()}</script></head><body>
<h1>{html.escape(title)}</h1>{body}
<script>{_SORT_JS}</script></body></html>
"""


def _best(study: Any) -> Any:
    try:
        return study.best_trial
    except ValueError:
        return None


def _figures(study: Any, record: Any, frame: Any,
             curves: dict[int, list[tuple[int, float]]]) -> list[tuple[str, Any, str]]:
    """Each plot's title, figure (or why it is not drawn) and what Optuna said while drawing it (on the
    page, under the title, rather than on the terminal: e.g. importances from too few trials)."""
    from optuna import visualization as vis

    out: list[tuple[str, Any, str]] = []
    plots = [("The best so far", vis.plot_optimization_history), ("Parallel coordinates", vis.plot_parallel_coordinate),
             ("Parameter importances", vis.plot_param_importances), ("Each parameter", vis.plot_slice)]
    for title, plot in plots:
        with _optuna_says() as said:
            try:
                fig = plot(study, target_name=record.metric)
            except Exception as exc:  # noqa: BLE001 - e.g. importances need two complete trials that differ
                logger.info("%s not drawn: %s", title, exc)
                fig = f"not drawn: {exc}"
        out.append((title, fig, said()))
    out.append(("Learning curves", _curves(frame, curves, record.metric), ""))
    return out


@contextlib.contextmanager
def _optuna_says() -> Iterator[Callable[[], str]]:
    """What Optuna warns of (Python's warnings) and logs (its ``optuna`` logger: "There are no complete
    trials.") meanwhile, kept rather than printed; the call yielded gives it as one line."""
    import warnings

    import optuna

    lines: list[logging.LogRecord] = []
    keep = logging.Handler(logging.WARNING)
    keep.emit = lines.append  # type: ignore[method-assign]
    optuna.logging.disable_default_handler()
    logging.getLogger("optuna").addHandler(keep)
    try:
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            yield lambda: " ".join(dict.fromkeys([*(str(w.message) for w in said), *(r.getMessage() for r in lines)]))
    finally:
        logging.getLogger("optuna").removeHandler(keep)
        optuna.logging.enable_default_handler()


def _curves(frame: Any, curves: dict[int, list[tuple[int, float]]], metric: str) -> Any:
    """Every trial's reported values of the objective metric; the early-stopped ones dashed and marked."""
    import plotly.graph_objects as go

    states = dict(zip(frame["number"], frame["state"])) if len(frame) else {}
    fig = go.Figure()
    for number in sorted(curves)[:MAX_CURVES]:
        points = curves[number]
        pruned = states.get(number) == "PRUNED"
        fig.add_trace(go.Scatter(x=[s for s, _ in points], y=[v for _, v in points], mode="lines+markers",
                                 name=f"trial {number}" + (" (stopped early)" if pruned else ""),
                                 line={"dash": "dash" if pruned else "solid"},
                                 marker={"symbol": "x" if pruned else "circle", "size": 5}))
    fig.update_layout(xaxis_title="step", yaxis_title=metric, height=450)
    return fig


def _section(title: str, fig: Any, note: str = "") -> str:
    head = f'<h2>{html.escape(title)}</h2>' + (f'<p class="note">{html.escape(note)}</p>' if note else "")
    if isinstance(fig, str):
        return f'{head}<p class="note">{html.escape(fig)}</p>'
    return f'{head}<div class="plot">{fig.to_html(full_html=False, include_plotlyjs=False)}</div>'


def _best_yaml(study: Any) -> str:
    import yaml

    best = _best(study)
    if best is None:
        return "# no complete trial yet"
    config = best.user_attrs.get("config") or best.params
    return (f"# trial {best.number}: {best.value}\n"
            + yaml.safe_dump({"parameters": {k: {"value": v} for k, v in config.items()}}, sort_keys=False))


def _table(frame: Any, marked: list[bool] | None = None) -> str:
    columns = [c for c in frame.columns if not frame[c].isna().all()]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    rows = []
    for i, (_, row) in enumerate(frame.iterrows()):
        cells = []
        for c in columns:
            v = row[c]
            number = isinstance(v, numbers.Number) and not isinstance(v, bool)
            if v is None or (number and v != v):
                text = ""
            else:
                text = f"{v:.6g}" if number and not float(v).is_integer() else str(v)
            cells.append(f'<td data-v="{html.escape(repr(float(v)) if number and text else text)}">{html.escape(text)}</td>')
        mark = ' class="differs"' if marked and marked[i] else ""
        rows.append(f"<tr{mark}>" + "".join(cells) + "</tr>")
    return f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
