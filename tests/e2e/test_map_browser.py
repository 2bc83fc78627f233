"""The map page in a real browser: headless Chromium (Debian's package) driven by Playwright,
against `embedlake serve` on loopback, over UMAP maps of two real collections (med, cranfield).
Cranfield's ids hold a `/` (prefix `cran/`), which the page must escape in its URLs. The pages run
under their Content-Security-Policy: any violation fails the test.

Screenshots of every step are saved under test-artifacts/map/ for a person to look at.
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, Request, sync_playwright

from embedlake.cli.releases import register_and_build as _build_now
from embedlake.ingest import ingest_path
from embedlake.training.train import train
from embedlake.workspace import Workspace
from tests.conftest import ROOT, collection
from tests.e2e.test_serve import Server, cli

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ENV = {"EMBEDLAKE_EMBED__MODEL": "lsa", "EMBEDLAKE_API__RELOAD_SECONDS": "0.2"}  # UMAP maps
SHOTS = ROOT / "test-artifacts" / "map"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (.ci/run does)")
    root = tmp_path_factory.mktemp("map") / "ws"
    with Workspace.init(root, environ=ENV) as ws:
        ingest_path(ws, collection("med"))
        ingest_path(ws, collection("cranfield"), id_prefix="cran/")
        first = _build_now(ws, train(ws, name="lsa-a", kind="lsa")[0])["release"]
        second = _build_now(ws, train(ws, name="lsa-b", kind="lsa", components=64)[0])["release"]
        production = ws.catalog.releases.alias("production")
    key = json.loads(cli("keys", "create", str(root), "--scope", "search", "--json"))["key"]
    server = Server(root, root.parent / "serve.log", env=ENV)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield {
            "url": server.url,
            "key": key,
            "releases": [first, second],
            "production": production,
        }
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


def _get(site: dict[str, Any], path: str) -> Any:
    headers = {"Authorization": f"Bearer {site['key']}"}
    response = httpx.get(f"{site['url']}{path}", headers=headers, timeout=30)
    response.raise_for_status()
    return response.json()


# every Content-Security-Policy violation of the page, kept where the test can read it
WATCH_CSP = """window.cspViolations = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));"""


def _watched(browser: Browser, site: dict[str, Any]) -> tuple[Page, list[str]]:
    """A page that records its script errors and every request to another origin."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.add_init_script(WATCH_CSP)
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    local = (site["url"], "data:", "blob:")

    def elsewhere(request: Request) -> None:
        if not request.url.startswith(local):
            problems.append(f"fetched {request.url}")

    page.on("request", elsewhere)
    return page, problems


def _clean(page: Page, problems: list[str]) -> None:
    assert problems == [] and page.evaluate("window.cspViolations") == []


def _open(browser: Browser, site: dict[str, Any]) -> Page:
    page, errors = _watched(browser, site)
    page.goto(site["url"] + "/")
    # keys mode: the page asks for a key once and keeps it
    page.wait_for_selector("#key-dialog[open]", timeout=30_000)
    page.fill("#key-input", site["key"])
    page.click("#key-dialog button")
    page.wait_for_selector("body[data-state=ready]", timeout=120_000)
    _clean(page, errors)
    return page


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def _ink(png: bytes) -> tuple[int, int]:
    """(pixels that are not background, distinct colours among them)."""
    rgb = _pixels(png).reshape(-1, 3)
    drawn = rgb[(rgb < 235).any(axis=1)]
    return len(drawn), len({tuple(c) for c in drawn[:: max(1, len(drawn) // 5000)] // 32})


def _view(page: Page, expression: str, view: int = 0) -> Any:
    return page.evaluate(f"() => window.embedlakeMap.views()[{view}].{expression}")


def test_the_map_draws_hovers_clicks_searches_and_switches(
    browser: Browser, site: dict[str, Any]
) -> None:
    page = _open(browser, site)
    assert page.input_value("#release") == site["production"]
    release = site["production"]
    n = _get(site, f"/v1/map/{release}")["points"]
    assert _view(page, "ids.length") == n == 2431
    assert f"{n:,} points" in page.inner_text("#status")

    # 1. the canvas is drawn: thousands of coloured pixels, in the two sources' colours
    canvas = page.locator(".map canvas").first
    shot = canvas.screenshot(path=str(SHOTS / "1-loaded.png"))
    drawn, colours = _ink(shot)
    assert drawn > 3000 and colours >= 2
    assert "med (1,033)" in page.inner_text(".legend") and "cranfield" in page.inner_text(".legend")

    # 2. hovering a point shows its title (or the start of its text)
    target = "cran/100"
    x, y = _view(page, f"screenPosition({json.dumps(target)})")
    page.mouse.move(x, y)
    page.wait_for_selector("#tooltip:not([hidden])", timeout=10_000)
    hovered = page.get_attribute("#tooltip", "data-id")
    assert hovered is not None
    hx, hy = _view(page, f"screenPosition({json.dumps(hovered)})")
    assert abs(hx - x) < 8 and abs(hy - y) < 8  # the point under the mouse
    doc = _get(site, f"/v1/documents/{quote(hovered, safe='')}")
    page.wait_for_function(
        "t => document.getElementById('tooltip').textContent === t",
        arg=doc["title"] or doc["text"][:100],
        timeout=10_000,
    )
    page.screenshot(path=str(SHOTS / "2-hover.png"))

    # 3. clicking shows the document and its neighbours, as the API has them
    page.mouse.click(x, y)
    page.wait_for_selector("#list li", timeout=20_000)
    clicked = page.get_attribute("#panel", "data-id")
    assert clicked is not None
    expected = _get(
        site, f"/v1/documents/{quote(clicked, safe='')}/neighbours?k=10&release={release}"
    )
    shown = page.eval_on_selector_all("#list li", "items => items.map(i => i.dataset.id)")
    assert shown == [h["id"] for h in expected["results"]] and len(shown) == 10
    page.screenshot(path=str(SHOTS / "3-neighbours.png"))
    page.click(f"#list li[data-id='{shown[0]}']")  # a neighbour is clickable in turn
    page.wait_for_function(f"() => document.getElementById('panel').dataset.id === '{shown[0]}'")

    # 4. a search highlights its results on the map and lists them
    page.fill("#query", "boundary layer heat transfer")
    page.click("#search button")
    page.wait_for_function(
        "() => /results highlighted/.test(document.getElementById('status').textContent)"
    )
    listed = page.eval_on_selector_all("#list li", "items => items.map(i => i.dataset.id)")
    assert len(listed) == 25 and all(i.startswith("cran/") for i in listed[:5])
    assert sorted(_view(page, "selected()")) == sorted(listed)
    page.screenshot(path=str(SHOTS / "4-search.png"))
    # a result whose id holds a "/" opens in the panel: its document, then its neighbours
    page.click(f"#list li[data-id='{listed[0]}']")
    page.wait_for_function(
        "id => document.querySelector('#doc small')?.textContent.startsWith(id + ' ·') "
        "&& document.querySelectorAll('#list li').length === 10",
        arg=listed[0],
        timeout=20_000,
    )

    # 5. switching releases redraws other points
    other = next(r for r in site["releases"] if r != release)
    before = _view(page, "x.slice(0, 50).join(',')")
    page.select_option("#release", other)
    page.wait_for_function(
        f"() => window.embedlakeMap.views()[0].release === '{other}' "
        "&& document.body.dataset.state === 'ready'"
    )
    assert _view(page, "x.slice(0, 50).join(',')") != before
    switched = canvas.screenshot(path=str(SHOTS / "5-switched.png"))
    assert _ink(switched)[0] > 3000

    # 6. two releases side by side
    page.select_option("#compare", release)
    page.wait_for_function(
        "() => window.embedlakeMap.views().length === 2 && document.body.dataset.state === 'ready'"
    )
    both = page.locator(".map canvas")
    assert both.count() == 2
    assert all(_ink(both.nth(i).screenshot())[0] > 2000 for i in range(2))
    page.screenshot(path=str(SHOTS / "6-compare.png"))
    assert page.evaluate("window.cspViolations") == []
    page.close()


def test_docs_run_from_the_package_under_their_policy(
    browser: Browser, site: dict[str, Any]
) -> None:
    page, problems = _watched(browser, site)
    page.goto(site["url"] + "/docs")
    page.wait_for_selector(".swagger-ui .opblock-summary-path", timeout=60_000)
    assert "/v1/search" in page.inner_text(".swagger-ui")
    page.screenshot(path=str(SHOTS / "7-docs.png"))
    _clean(page, problems)
    page.close()


def test_a_wrong_key_is_asked_for_again(browser: Browser, site: dict[str, Any]) -> None:
    page = browser.new_page()
    page.goto(site["url"] + "/")
    page.wait_for_selector("#key-dialog[open]", timeout=30_000)
    page.fill("#key-input", "elk_nope_nope")
    page.click("#key-dialog button")
    page.wait_for_selector("#key-dialog[open]", timeout=30_000)  # 401 again: asked again
    page.fill("#key-input", site["key"])
    page.click("#key-dialog button")
    page.wait_for_selector("body[data-state=ready]", timeout=120_000)
    page.close()
