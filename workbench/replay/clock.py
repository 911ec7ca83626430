"""The replay clock: ``replay_ms = anchor_ms + (wall_now - anchor_wall) * speed``, clamped to the data's end.

Every change (pause, resume, a new speed, an explicit advance) re-anchors the clock at the current replay time,
so it never jumps back. ``speed=0`` (or ``pause()``) stops it; ``advance(ms)`` then moves it by exact amounts,
which is how tests stay deterministic. Thread-safe.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["ReplayClock"]


class ReplayClock:
    def __init__(
        self,
        start_ms: int,
        speed: float = 1.0,
        *,
        end_ms: int | None = None,
        wall: Callable[[], float] = time.time,
        running: bool = True,
    ):
        """``running=False``: the clock holds at ``start_ms`` until :meth:`begin` (a server calls it once it
        is listening, so loading data does not eat into the replay)."""
        if speed < 0:
            raise ValueError(f"replay clock: speed must be >= 0, got {speed}")
        self._wall = wall
        self._lock = threading.Lock()
        self._anchor_ms = int(start_ms)
        self._anchor_wall = wall()
        self._speed = float(speed)
        self._paused = False
        self._begun = bool(running)
        self.end_ms = end_ms
        self._listeners: list[Callable[[], None]] = []

    def _raw(self) -> float:
        if not self._begun:
            self._anchor_wall = self._wall()
        if self._paused or self._speed == 0 or not self._begun:
            return float(self._anchor_ms)
        return self._anchor_ms + (self._wall() - self._anchor_wall) * 1000.0 * self._speed

    def now(self) -> int:
        """The replay time in epoch milliseconds."""
        with self._lock:
            t = int(self._raw())
        return t if self.end_ms is None else min(t, self.end_ms)

    @property
    def speed(self) -> float:
        return self._speed

    @property
    def paused(self) -> bool:
        return self._paused or self._speed == 0

    @property
    def finished(self) -> bool:
        """The clock has reached the end of the data (it stays there)."""
        return self.end_ms is not None and self.now() >= self.end_ms

    def _reanchor(self) -> None:
        t = int(self._raw())
        self._anchor_ms = t if self.end_ms is None else min(t, self.end_ms)
        self._anchor_wall = self._wall()

    def begin(self) -> None:
        """Start counting wall time from now (no-op when already running)."""
        with self._lock:
            if not self._begun:
                self._anchor_wall = self._wall()
                self._begun = True

    def on_change(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` (from the changing thread) after every pause, resume, speed change or advance."""
        self._listeners.append(fn)

    def _changed(self) -> None:
        for fn in list(self._listeners):
            fn()

    def pause(self) -> None:
        with self._lock:
            self._reanchor()
            self._paused = True
        self._changed()

    def resume(self) -> None:
        with self._lock:
            self._reanchor()
            self._paused = False
        self._changed()

    def set_speed(self, speed: float) -> None:
        if speed < 0:
            raise ValueError(f"replay clock: speed must be >= 0, got {speed}")
        with self._lock:
            self._reanchor()
            self._speed = float(speed)
        self._changed()

    def advance(self, ms: int) -> int:
        """Move the clock forward by ``ms`` replay milliseconds (>= 0); returns the new time."""
        if ms < 0:
            raise ValueError(f"replay clock: cannot go back in time (advance by {ms} ms)")
        with self._lock:
            self._reanchor()
            self._anchor_ms += int(ms)
            if self.end_ms is not None:
                self._anchor_ms = min(self._anchor_ms, self.end_ms)
        self._changed()
        return self.now()

    def set(self, ms: int) -> int:
        """Jump forward to replay time ``ms`` (never back); returns the new time."""
        now = self.now()
        if ms < now:
            raise ValueError(f"replay clock: cannot go back in time (from {now} to {ms})")
        return self.advance(int(ms) - now)
