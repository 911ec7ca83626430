"""The browser harness on a throwaway dashboard (tests/browser/smoke.ipynb): a real Voilà server with a token, a
real chromium, a FigureWidget that a kernel task updates, the token check and kernel culling."""

from __future__ import annotations

import re

from playwright.sync_api import expect


def test_without_the_token_no_page_and_no_kernel(smoke_server) -> None:
    before = smoke_server.kernels()
    for path in (
        "/voila/render/smoke.ipynb",
        "/voila/render/smoke.ipynb?token=wrong",
        "/",
        "/voila/tree",
    ):
        status, headers, body = smoke_server.get(path)
        assert status in (302, 401, 403), (path, status, body[:300])
        if status == 302:
            assert "login" in headers.get("location", ""), (path, headers)
        assert "smoke_panel" not in body and "smoke-status" not in body, path
    assert smoke_server.kernels() == before
    # the same page with the token is served (the check above is not a server that refuses everyone)
    status, _, body = smoke_server.get(
        smoke_server.render_url("smoke.ipynb").split(str(smoke_server.port), 1)[1]
    )
    assert status == 200 and "smoke-status" in body
    assert smoke_server.token not in smoke_server.text()


def test_smoke_dashboard_draws_and_updates_without_console_errors(smoke_server, page, shoot) -> None:
    # every status the page shows, recorded as it is added (polling the text could miss the short-lived ones)
    page.add_init_script(
        """window.__statuses = []; new MutationObserver(records => { for (const r of records)
          for (const n of r.addedNodes) for (const e of (n.querySelectorAll ? [n, ...n.querySelectorAll('.smoke-status')] : []))
            if (e.classList && e.classList.contains('smoke-status')) window.__statuses.push(e.textContent); })
          .observe(document, {subtree: true, childList: true});"""
    )
    page.goto(smoke_server.render_url("smoke.ipynb"))
    status = page.locator(".smoke-status")
    expect(status).to_have_text("done 12")
    seen = page.evaluate("() => window.__statuses")
    assert any(re.fullmatch(r"points \d+", t) for t in seen), seen  # updated point by point, live
    expect(page.locator(".js-plotly-plot .scatterlayer .trace .point")).to_have_count(12)
    shoot(page, "smoke")
    assert page.errors.unexpected() == [], page.errors.console
    assert page.errors.disallowed_external() == []


def test_a_closed_tabs_kernel_is_culled(smoke_server, page) -> None:
    before = set(smoke_server.kernels())
    page.goto(smoke_server.render_url("smoke.ipynb"))
    expect(page.locator(".smoke-status")).to_have_text("done 12")
    mine = smoke_server.wait_kernels(lambda ks: set(ks) - before)
    new = set(mine) - before
    page.close()
    smoke_server.wait_kernels(lambda ks: not (set(ks) & new), timeout_s=60)
