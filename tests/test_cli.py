"""The command line as a user runs it: subprocesses, exit codes, what is imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SPACES = Path(__file__).parent / "spaces"
HEAVY = ("ray", "mlflow", "wandb", "torch")


def _sweeps(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sweeps.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=120, stdin=subprocess.DEVNULL
    )


def _imported_after(argv: list[str]) -> set[str]:
    code = (
        "import sys\n"
        "from sweeps.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return set(eval(out.stdout.strip().splitlines()[-1]))  # noqa: S307 - our own printed list


def test_help_and_validate_import_no_framework() -> None:
    assert _imported_after(["--help"]) == set()
    assert _imported_after(["validate", str(SPACES / "wandb" / "extensions.yaml")]) == set()


def test_validate_prints_a_summary_of_a_valid_file() -> None:
    out = _sweeps("validate", str(SPACES / "wandb" / "grid_basic.yaml"))
    assert out.returncode == 0, out.stderr
    assert "method: grid" in out.stdout
    assert "metric: val_acc (maximize)" in out.stdout
    assert "q_uniform [32, 128] q=32 (4 values)" in out.stdout
    assert "grid size: 36" in out.stdout


def test_validate_reports_every_error_in_one_line_each_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: bayes\nmetric: {name: acc, goal: maximise}\nparameters:\n  lr: {min: 0.1, max: 0.01}\n")
    out = _sweeps("validate", str(bad))
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        f"{bad}:2: metric.goal: 'maximise' is not valid; use one of: minimize, maximize (did you mean 'maximize'?)",
        f"{bad}:4: parameters.lr.min: min (0.1) must be below max (0.01)",
    ]
    assert "Traceback" not in out.stderr


def test_strict_turns_warnings_into_errors(tmp_path: Path) -> None:
    f = tmp_path / "w.yaml"
    f.write_text("method: random\nparameters:\n  dropout: {min: 0, max: 1}\n")
    assert _sweeps("validate", str(f)).returncode == 0
    strict = _sweeps("validate", "--strict", str(f))
    assert strict.returncode == 2 and "int_uniform over {0, 1}" in strict.stderr


def test_missing_file_is_one_line() -> None:
    out = _sweeps("validate", "nope.yaml")
    assert out.returncode == 2
    assert out.stderr.strip() == "nope.yaml: cannot read the file: No such file or directory"


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    out = _sweeps("--debug", "validate", "nope.yaml")
    assert out.returncode != 0 and "Traceback" in out.stderr
