"""Price models (PyTorch, CPU-friendly): MLP on the last feature row; GRU, LSTM and a causal temporal
convolutional network (TCN) on windows of feature rows. Each outputs one number per sample: a logit for the
``direction`` target, the forward log return for ``return``. Built by name from plain hyperparameters, so a
registry can rebuild them from ``meta.json``."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["ARCHS", "SEQUENCE_ARCHS", "build_model", "search_space"]


class MLP(nn.Module):
    def __init__(self, n_features: int, hidden: int = 64, layers: int = 2, dropout: float = 0.1) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        d = n_features
        for _ in range(layers):
            mods += [nn.Linear(d, hidden), nn.GELU(), nn.Dropout(dropout)]
            d = hidden
        mods.append(nn.Linear(d, 1))
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            x = x[:, -1, :]
        return self.net(x)


class _Recurrent(nn.Module):
    cell: type[nn.Module] = nn.GRU

    def __init__(self, n_features: int, hidden: int = 32, layers: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.rnn = self.cell(
            n_features, hidden, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0
        )
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:
            x = x[:, None, :]
        out, _ = self.rnn(x)
        return self.head(out[:, -1, :])


class GRUNet(_Recurrent):
    cell = nn.GRU


class LSTMNet(_Recurrent):
    cell = nn.LSTM


class _CausalConv(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.pad = (kernel - 1) * dilation
        self.conv = nn.Conv1d(cin, cout, kernel, dilation=dilation)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Conv1d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, T)
        y = self.conv(nn.functional.pad(x, (self.pad, 0)))  # left padding only: no look into later steps
        return self.drop(self.act(y)) + self.skip(x)


class TCN(nn.Module):
    """Dilated causal convolutions (Bai, Kolter & Koltun 2018) over the window; the last step feeds the head."""

    def __init__(
        self, n_features: int, channels: int = 32, levels: int = 3, kernel: int = 3, dropout: float = 0.1
    ) -> None:
        super().__init__()
        blocks = []
        cin = n_features
        for i in range(levels):
            blocks.append(_CausalConv(cin, channels, kernel, 2**i, dropout))
            cin = channels
        self.net = nn.Sequential(*blocks)
        self.head = nn.Linear(channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:
            x = x[:, None, :]
        h = self.net(x.transpose(1, 2))
        return self.head(h[:, :, -1])


ARCHS: dict[str, type[nn.Module]] = {"mlp": MLP, "gru": GRUNet, "lstm": LSTMNet, "tcn": TCN}
SEQUENCE_ARCHS = frozenset({"gru", "lstm", "tcn"})

_SPACES: dict[str, dict[str, tuple]] = {
    "mlp": {
        "hidden": ("int", 16, 128, True),
        "layers": ("int", 1, 3, False),
        "dropout": ("float", 0.0, 0.4, False),
    },
    "gru": {"hidden": ("int", 8, 64, True), "layers": ("int", 1, 2, False)},
    "lstm": {"hidden": ("int", 8, 64, True), "layers": ("int", 1, 2, False)},
    "tcn": {
        "channels": ("int", 8, 64, True),
        "levels": ("int", 2, 4, False),
        "dropout": ("float", 0.0, 0.3, False),
    },
}
_TRAIN_SPACE = {"lr": ("float", 1e-4, 1e-2, True), "weight_decay": ("float", 1e-6, 1e-2, True)}


def search_space(arch: str) -> dict[str, tuple]:
    """``{name: (type, low, high, log)}`` for the architecture's and the optimiser's hyperparameters."""
    return {**_SPACES[arch], **_TRAIN_SPACE}


def build_model(arch: str, n_features: int, **hparams: Any) -> nn.Module:
    if arch not in ARCHS:
        import difflib

        hint = difflib.get_close_matches(arch, list(ARCHS), n=1)
        raise ValueError(
            f"unknown model {arch!r}"
            + (f" (did you mean {hint[0]!r}?)" if hint else "")
            + f"; models: {', '.join(ARCHS)}"
        )
    model_params = {k: v for k, v in hparams.items() if k in _SPACES[arch]}
    return ARCHS[arch](n_features, **model_params)
