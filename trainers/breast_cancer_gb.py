"""Gradient boosting on scikit-learn's bundled breast-cancer data; no torch.

Reports validation accuracy and log loss every ``report_every`` trees, so
early termination has something to judge, and keeps the fitted model.
"""

from __future__ import annotations

from typing import Any

from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import train_test_split


def train(config: dict[str, Any], report: Any) -> dict[str, float]:
    x, y = load_breast_cancer(return_X_y=True)
    x_tr, x_va, y_tr, y_va = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    model = GradientBoostingClassifier(
        n_estimators=int(config.get("n_estimators", 100)),
        learning_rate=float(config.get("learning_rate", 0.1)),
        max_depth=int(config.get("max_depth", 3)),
        subsample=float(config.get("subsample", 1.0)),
        random_state=int(config.get("seed", 0)),
    )
    model.fit(x_tr, y_tr)
    every = int(config.get("report_every", 10))
    metrics: dict[str, float] = {}
    for i, proba in enumerate(model.staged_predict_proba(x_va), start=1):
        if i % every == 0 or i == model.n_estimators_:
            metrics = {"val_acc": accuracy_score(y_va, proba.argmax(1)), "val_loss": log_loss(y_va, proba)}
            report(step=i, **metrics)
    if hasattr(report, "model"):  # under sweeps (a plain function from other tools keeps nothing)
        report.model(model, example=x_va[:2])
    return metrics
