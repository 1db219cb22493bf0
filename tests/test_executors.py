"""Both executors pass the executor contract (tests/executor_contract.py): the local one
without Ray, the Ray one on the session's Ray."""

from __future__ import annotations

import pytest

from executor_contract import ExecutorContract
from sweeps.errors import FatalError
from sweeps.executors import LocalExecutor, Plan


class TestLocalExecutor(ExecutorContract):
    def make(self, plan: Plan) -> LocalExecutor:
        return LocalExecutor(plan)


class TestRayExecutor(ExecutorContract):
    @pytest.fixture(autouse=True)
    def _ray(self, ray_cluster) -> None:
        pass

    def make(self, plan: Plan):
        from sweeps.execution import RayExecutor

        return RayExecutor(plan)


def test_the_local_executor_refuses_gpu_trials() -> None:
    with pytest.raises(FatalError, match="the local executor runs CPU trials only"):
        LocalExecutor(Plan(gpus=1))


def test_without_ray_the_local_executor_never_imports_it() -> None:
    import subprocess
    import sys

    code = ("import sys; sys.path[:0] = ['tests']\n"
            "from executor_contract import ExecutorContract\n"
            "from sweeps.executors import LocalExecutor\n"
            "class T(ExecutorContract):\n"
            "    def make(self, plan): return LocalExecutor(plan)\n"
            "T().test_a_trial_runs_and_comes_back_with_its_result()\n"
            "print('ray' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
