"""One trainer for every torch model of the workbench: mini-batches, early stopping on a validation set,
checkpoints of the best weights, seeds for repeatable runs, a progress bar, and a thread count sized for the
machine (small models on 2 cores train fastest single-threaded, especially inside Optuna trials).

torch's thread count is a property of the process: the entry point (the CLI, a notebook) sets it once from
the settings with ``set_threads(settings.ml.torch_threads)``; a ``TrainConfig(threads=N)`` overrides it for one
training run, ``threads=None`` keeps what the process set.

>>> trainer = Trainer(model, loss="bce", config=TrainConfig(epochs=30, lr=1e-3, seed=7))
>>> history = trainer.fit((X_train, y_train), (X_valid, y_valid))
>>> p = trainer.predict(X_test)
"""

from __future__ import annotations

import copy
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["LOSSES", "TrainConfig", "TrainHistory", "Trainer", "set_seed", "set_threads"]


def set_seed(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA) and make cuDNN deterministic."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def set_threads(n: int | None) -> int:
    """Set torch's intra-op threads to ``n`` (at most the machine's cores; ``None``: leave them as they are)
    and return the count in effect. Call it with ``settings.ml.torch_threads`` where a process starts."""
    if n is None:
        return torch.get_num_threads()
    n = max(1, min(int(n), os.cpu_count() or 1))
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def _qlike(pred_var: torch.Tensor, realized_var: torch.Tensor) -> torch.Tensor:
    """QLIKE loss for variance forecasts: mean(rv / h - log(rv / h) - 1), h = predicted variance > 0."""
    h = torch.clamp(pred_var, min=1e-12)
    ratio = torch.clamp(realized_var, min=1e-12) / h
    return (ratio - torch.log(ratio) - 1.0).mean()


LOSSES: dict[str, Callable[[], Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]] = {
    "bce": lambda: nn.BCEWithLogitsLoss(),  # binary direction: the model outputs logits
    "ce": lambda: nn.CrossEntropyLoss(),  # classes: logits (N, C), targets int64 (N,)
    "mse": lambda: nn.MSELoss(),
    "huber": lambda: nn.HuberLoss(),
    "qlike": lambda: _qlike,  # volatility: the model outputs a positive variance
}


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 50
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 5
    """Epochs without a validation improvement (by more than ``min_delta``) before stopping."""
    min_delta: float = 0.0
    grad_clip: float | None = 1.0
    schedule: str = "constant"
    """Learning rate over the run: 'constant', or 'linear' (a linear warm-up over the first ``warmup``
    fraction of the steps, then a linear decay to zero at the last step: the usual fine-tuning recipe)."""
    warmup: float = 0.0
    seed: int = 42
    threads: int | None = None
    device: str = "cpu"
    shuffle: bool = True
    checkpoint: str | None = None
    """File to save the best weights to (and resume from, if it exists and ``resume``)."""
    resume: bool = False
    progress: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainHistory:
    train_loss: list[float] = field(default_factory=list)
    valid_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    best_valid: float = math.inf
    stopped_early: bool = False
    seconds: float = 0.0
    samples: int = 0

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["samples_per_s"] = self.samples_per_s
        return d


def _tensor(x: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x if dtype is None else x.to(dtype)
    arr = np.asarray(x)
    if dtype is None:
        dtype = torch.long if np.issubdtype(arr.dtype, np.integer) else torch.float32
    return torch.as_tensor(arr, dtype=dtype)


def _scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int) -> Any:
    """The per-step learning-rate schedule of ``cfg`` (None for a constant rate)."""
    if cfg.schedule == "constant":
        return None
    if cfg.schedule != "linear":
        raise ValueError(f"unknown schedule {cfg.schedule!r}; schedules: constant, linear")
    if not 0.0 <= cfg.warmup < 1.0:
        raise ValueError(f"warmup is a fraction of the steps in [0, 1), not {cfg.warmup}")
    total = max(cfg.epochs * steps_per_epoch, 1)
    warm = int(cfg.warmup * total)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (total - step) / max(total - warm, 1))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


class Trainer:
    """Fits a ``torch.nn.Module`` on arrays ``(X, y)``; ``X`` may be (N, F) or (N, T, F) (sequences)."""

    def __init__(
        self,
        model: nn.Module,
        loss: str | Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = "mse",
        config: TrainConfig | None = None,
    ) -> None:
        self.config = config or TrainConfig()
        self.loss_name = loss if isinstance(loss, str) else getattr(loss, "__name__", "custom")
        if isinstance(loss, str):
            if loss not in LOSSES:
                raise ValueError(f"unknown loss {loss!r}; losses: {', '.join(LOSSES)}")
            self.loss_fn = LOSSES[loss]()
        else:
            self.loss_fn = loss
        self.device = torch.device(
            self.config.device
            if self.config.device != "auto"
            else ("cuda" if torch.cuda.is_available() else "cpu")
        )
        self.model = model.to(self.device)
        self.history = TrainHistory()

    def _target(self, y: Any) -> torch.Tensor:
        if self.loss_name == "ce":
            return _tensor(y, torch.long)
        return _tensor(y, torch.float32)

    def _out(self, xb: torch.Tensor) -> torch.Tensor:
        out = self.model(xb)
        return out.squeeze(-1) if out.ndim > 1 and out.shape[-1] == 1 and self.loss_name != "ce" else out

    def _eval_loss(self, X: torch.Tensor, y: torch.Tensor) -> float:
        self.model.eval()
        total, n = 0.0, 0
        with torch.no_grad():
            for i in range(0, len(X), 4096):
                xb, yb = X[i : i + 4096].to(self.device), y[i : i + 4096].to(self.device)
                total += float(self.loss_fn(self._out(xb), yb)) * len(xb)
                n += len(xb)
        return total / max(n, 1)

    def fit(
        self,
        train: tuple[Any, Any],
        valid: tuple[Any, Any] | None = None,
        on_epoch: Callable[[int, float, float | None], None] | None = None,
    ) -> TrainHistory:
        """Train; with ``valid``, keep the weights of the best validation epoch and stop after ``patience``
        epochs without improvement. ``on_epoch(epoch, train_loss, valid_loss)`` may raise to stop (Optuna
        pruning does)."""
        cfg = self.config
        set_seed(cfg.seed)
        set_threads(cfg.threads)
        X, y = _tensor(train[0], torch.float32), self._target(train[1])
        if len(X) != len(y):
            raise ValueError(f"X has {len(X)} rows but y has {len(y)}")
        if len(X) == 0:
            raise ValueError("no training samples")
        Xv, yv = (
            (_tensor(valid[0], torch.float32), self._target(valid[1])) if valid is not None else (None, None)
        )
        opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = _scheduler(opt, cfg, steps_per_epoch=math.ceil(len(X) / cfg.batch_size))
        self.optimizer, self.scheduler = opt, sched  # for inspection (the learning rate of the next step)
        gen = torch.Generator().manual_seed(cfg.seed)
        best_state = copy.deepcopy(self.model.state_dict())
        ckpt = Path(cfg.checkpoint) if cfg.checkpoint else None
        start_epoch = 0
        if ckpt is not None and cfg.resume and ckpt.exists():
            saved = torch.load(ckpt, map_location=self.device, weights_only=False)
            self.model.load_state_dict(saved["model"])
            opt.load_state_dict(saved["optimizer"])
            if sched is not None and saved.get("scheduler") is not None:
                sched.load_state_dict(saved["scheduler"])
            self.history = TrainHistory(**{k: v for k, v in saved["history"].items() if k != "samples_per_s"})
            start_epoch = len(self.history.train_loss)
            best_state = copy.deepcopy(saved["best"])
        bar = None
        if cfg.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.epochs, initial=start_epoch, desc="train", leave=False)
        t0 = time.perf_counter()
        bad = 0
        for epoch in range(start_epoch, cfg.epochs):
            self.model.train()
            order = torch.randperm(len(X), generator=gen) if cfg.shuffle else torch.arange(len(X))
            total = 0.0
            for i in range(0, len(X), cfg.batch_size):
                idx = order[i : i + cfg.batch_size]
                xb, yb = X[idx].to(self.device), y[idx].to(self.device)
                opt.zero_grad(set_to_none=True)
                loss = self.loss_fn(self._out(xb), yb)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"epoch {epoch}: the loss is {float(loss)} (lower the learning rate?)"
                    )
                loss.backward()
                if cfg.grad_clip:
                    nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                opt.step()
                if sched is not None:
                    sched.step()
                total += float(loss.detach()) * len(idx)
                self.history.samples += len(idx)
            tl = total / len(X)
            self.history.train_loss.append(tl)
            vl = self._eval_loss(Xv, yv) if Xv is not None else None
            if vl is not None:
                self.history.valid_loss.append(vl)
                if vl < self.history.best_valid - cfg.min_delta:
                    self.history.best_valid, self.history.best_epoch, bad = vl, epoch, 0
                    best_state = copy.deepcopy(self.model.state_dict())
                else:
                    bad += 1
            else:
                self.history.best_epoch, best_state = epoch, copy.deepcopy(self.model.state_dict())
            if ckpt is not None:
                ckpt.parent.mkdir(parents=True, exist_ok=True)
                tmp = ckpt.with_suffix(ckpt.suffix + ".tmp")
                torch.save(
                    {
                        "model": self.model.state_dict(),
                        "optimizer": opt.state_dict(),
                        "scheduler": None if sched is None else sched.state_dict(),
                        "history": self.history.to_dict(),
                        "best": best_state,
                    },
                    tmp,
                )
                os.replace(tmp, ckpt)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(train=f"{tl:.4g}", valid="-" if vl is None else f"{vl:.4g}")
            if on_epoch is not None:
                on_epoch(epoch, tl, vl)
            if Xv is not None and bad >= cfg.patience:
                self.history.stopped_early = True
                break
        if bar is not None:
            bar.close()
        self.history.seconds += time.perf_counter() - t0
        self.model.load_state_dict(best_state)
        self.model.eval()
        return self.history

    def predict(self, X: Any, batch_size: int = 4096) -> np.ndarray:
        """Raw model outputs (logits for 'bce'/'ce' models) as numpy."""
        self.model.eval()
        Xt = _tensor(X, torch.float32)
        outs = []
        with torch.no_grad():
            for i in range(0, len(Xt), batch_size):
                outs.append(self._out(Xt[i : i + batch_size].to(self.device)).cpu().numpy())
        return np.concatenate(outs) if outs else np.empty(0)
