"""A throwaway dashboard panel for the browser harness (tests/browser/smoke.ipynb): one plotly FigureWidget that a
kernel task extends point by point once the browser has drawn it (``fig._view_count >= 1``, see STACK-NOTES), and
a status line. The task ends after ``points`` updates, so the kernel goes idle and can be culled."""

from __future__ import annotations

import asyncio

import ipywidgets as widgets
import plotly.graph_objects as go


def page(points: int = 12, interval_s: float = 0.1) -> widgets.Widget:
    fig = go.FigureWidget(data=[go.Scatter(x=[], y=[], mode="lines+markers", name="smoke")])
    fig.update_layout(height=300, margin={"l": 40, "r": 10, "t": 30, "b": 30}, title="smoke")
    status = widgets.HTML('<span class="smoke-status">waiting for the browser</span>')

    async def run() -> None:
        while (fig._view_count or 0) < 1:
            await asyncio.sleep(0.05)
        for i in range(1, points + 1):
            with fig.batch_update():
                fig.data[0].x = list(range(i))
                fig.data[0].y = [j * j for j in range(i)]
            status.value = f'<span class="smoke-status">points {i}</span>'
            await asyncio.sleep(interval_s)
        status.value = f'<span class="smoke-status">done {points}</span>'

    box = widgets.VBox([status, fig])
    box._task = asyncio.ensure_future(run())  # kept referenced while the page lives
    return box
