"""A plain W&B training script, the kind a W&B sweep runs: argparse for the defaults, wandb.init,
wandb.log every epoch. Nothing in it knows of sweeps.

    python trainers/wandb_script.py --lr=0.01 --epochs=3          # alone
    sweeps launch search_spaces/wandb_script.yaml                  # as a sweep, unchanged

It trains a small torch MLP on scikit-learn's bundled digits. Its config comes from
``wandb.config``, which holds the sweep's values over these defaults (W&B's agent gives them
the same way). ``--config-json FILE`` reads the values from a JSON file instead, as a command
with ``${args_json_file}`` passes them.
"""

from __future__ import annotations

import argparse
import json

import torch
import wandb
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn


def parse() -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.003)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config-json", help="a JSON file of values (a command's ${args_json_file})")
    args = parser.parse_args()
    config = {k: v for k, v in vars(args).items() if k != "config_json"}
    if args.config_json:
        with open(args.config_json) as f:
            config.update(json.load(f))
    return config


def main() -> None:
    run = wandb.init(project="digits", config=parse())
    config = run.config
    torch.manual_seed(config.seed)
    torch.set_num_threads(1)
    x, y = load_digits(return_X_y=True)
    x_tr, x_va, y_tr, y_va = train_test_split(x / 16.0, y, test_size=0.25, random_state=0, stratify=y)
    x_tr, x_va = torch.tensor(x_tr, dtype=torch.float32), torch.tensor(x_va, dtype=torch.float32)
    y_tr, y_va = torch.tensor(y_tr), torch.tensor(y_va)
    model = nn.Sequential(nn.Linear(64, config.hidden), nn.ReLU(), nn.Dropout(config.dropout),
                          nn.Linear(config.hidden, 10))
    opt_cls = torch.optim.SGD if config.optimizer == "sgd" else torch.optim.Adam
    opt = opt_cls(model.parameters(), lr=config.lr)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(config.epochs):
        model.train()
        for i in range(0, len(x_tr), 64):
            opt.zero_grad()
            loss = loss_fn(model(x_tr[i:i + 64]), y_tr[i:i + 64])
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            logits = model(x_va)
            val_loss = float(loss_fn(logits, y_va))
            val_acc = float((logits.argmax(1) == y_va).float().mean())
        wandb.log({"epoch": epoch, "val_loss": val_loss, "val_acc": val_acc})
        print(f"epoch {epoch}: val_loss {val_loss:.4f} val_acc {val_acc:.4f}")
    run.finish()


if __name__ == "__main__":
    main()
