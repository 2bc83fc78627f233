"""The map page in a real browser: headless Chromium (Debian's package) driven by Playwright,
against `embedlake serve` on loopback, over UMAP maps of two real collections (med, cranfield).
Cranfield's ids hold a `/` (prefix `cran/`), which the page must escape in its URLs. The pages run
under their Content-Security-Policy: any violation fails the test. The documents carry two metadata
fields: `length` (four buckets of the text's length, more informative than the two sources: the
map opens coloured by it) and `licence` (one value: never offered).

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
from embedlake.ingest.datasets import register_beir
from embedlake.training.train import train
from embedlake.workspace import Workspace
from tests.conftest import ROOT, collection, write_jsonl
from tests.e2e.test_serve import Server, cli

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ENV = {"EMBEDLAKE_EMBED__MODEL": "lsa", "EMBEDLAKE_API__RELOAD_SECONDS": "3600"}  # UMAP maps
SHOTS = ROOT / "test-artifacts" / "map"
LENGTHS = ("under 100 words", "100-149 words", "150-199 words", "200 words or more")
EDGE = 6  # CSS pixels: the radius of the largest point drawn (a selected one, with its outline)


def _with_fields(name: str, folder: Path) -> Path:
    """A copy of a collection's corpus whose documents carry `length` and `licence`."""
    rows = []
    for line in (collection(name) / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        words = len(row["text"].split())
        row["length"] = LENGTHS[(words >= 100) + (words >= 150) + (words >= 200)]
        row["licence"] = "research use"
        rows.append(row)
    folder.mkdir(parents=True, exist_ok=True)
    return write_jsonl(folder / f"{name}.jsonl", rows)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (.ci/run does)")
    root = tmp_path_factory.mktemp("map") / "ws"
    with Workspace.init(root, environ=ENV) as ws:
        for name, prefix in (("med", ""), ("cranfield", "cran/")):
            ingest_path(
                ws, _with_fields(name, root.parent / "fielded"), source=name, id_prefix=prefix
            )
            register_beir(ws, collection(name), name=name, id_prefix=prefix)
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
    # drawn where the server put them (fetched as uint16 pairs: within a grid step, scaled by the
    # page's margin), fainter where points pile up
    headers = {"Authorization": f"Bearer {site['key']}"}
    points = httpx.get(f"{site['url']}/v1/map/{quote(release)}/points", headers=headers)
    xy = np.frombuffer(points.content, dtype="<f4").reshape(-1, 2)
    drawn_xy = (
        np.array(
            page.evaluate(
                "() => { const v = window.embedlakeMap.views()[0]; return [...v.x, ...v.y] }"
            )
        )
        .reshape(2, -1)
        .T
    )
    edge = int(np.abs(xy[:, 0]).argmax())
    fit = drawn_xy[edge, 0] / xy[edge, 0]
    assert 0.9 < fit < 1 and np.abs(drawn_xy - xy * fit).max() < 2 / 65535
    assert _view(page, "plot.get('opacityBy')") == "density"

    # 1. the canvas is drawn: thousands of coloured pixels, in the two sources' colours (chosen)
    page.select_option("#field", "source")
    page.wait_for_function(
        "() => /med \\(1,033\\)/.test(document.querySelector('.legend').innerText)"
    )
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


def test_the_map_opens_coloured_by_its_most_informative_field(
    browser: Browser, site: dict[str, Any]
) -> None:
    index = _get(site, "/v1/map")
    # `source` has two values, `length` four, evenly spread; `licence` one: never offered
    assert index["fields"] == ["source", "length"] and index["default_field"] == "length"
    page = _open(browser, site)
    assert page.input_value("#field") == "length"
    legend = page.inner_text(".legend")
    assert all(bucket in legend for bucket in LENGTHS) and "med" not in legend
    drawn, colours = _ink(
        page.locator(".map canvas").first.screenshot(path=str(SHOTS / "8-length.png"))
    )
    assert drawn > 3000 and colours >= 4
    page.select_option("#field", "source")  # the reader can still choose
    page.wait_for_function("() => /cranfield/.test(document.querySelector('.legend').innerText)")
    assert "med (1,033)" in page.inner_text(".legend")
    page.close()


def _shown(page: Page) -> list[str]:
    return list(_view(page, "shownTopics()"))


def test_regions_are_labelled_with_their_topics_and_finer_ones_when_zoomed(
    browser: Browser, site: dict[str, Any]
) -> None:
    topics = _get(site, f"/v1/map/{site['production']}/topics")
    levels = [[" · ".join(t["keywords"]) for t in level["topics"]] for level in topics["levels"]]
    assert [level["clusters"] for level in topics["levels"]] == [8, 32, 128]
    page = _open(browser, site)
    page.wait_for_function("() => document.querySelector('.map .topics').dataset.level === '0'")
    coarse = _shown(page)
    # most of the coarse level's labels fit without overlapping, as their keywords, on screen
    assert len(coarse) >= 5 and set(coarse) <= set(levels[0])
    first = page.locator(".map .topic:not([hidden])").first
    assert first.is_visible() and first.inner_text() in coarse
    assert coarse[0] in page.inner_text(".map .topics")
    page.locator(".map canvas").first.screenshot(path=str(SHOTS / "9-topics.png"))

    # zooming in with the wheel shows the finer clusters' labels instead
    box = page.locator(".map canvas").first.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    for _ in range(20):
        page.mouse.wheel(0, -300)
        page.wait_for_timeout(100)
        if _view(page, "level()") > 0:
            break
    page.wait_for_function("() => document.querySelector('.map .topics').dataset.level !== '0'")
    level = _view(page, "level()")
    page.wait_for_timeout(300)  # the labels follow the camera on the next frame
    finer = _shown(page)
    assert finer and set(finer) <= set(levels[level]) and set(finer) != set(coarse)
    page.locator(".map canvas").first.screenshot(path=str(SHOTS / "10-topics-zoomed.png"))
    _clean(page, [])
    page.close()


def test_no_point_is_drawn_outside_the_canvas(browser: Browser, site: dict[str, Any]) -> None:
    page = _open(browser, site)
    extent = page.evaluate(
        """() => {
        const view = window.embedlakeMap.views()[0];
        const xs = [], ys = [];
        for (let i = 0; i < view.ids.length; i += 1) {
          const [x, y] = view.plot.getScreenPosition(i);
          xs.push(x);
          ys.push(y);
        }
        return { width: view.canvas.clientWidth, height: view.canvas.clientHeight,
                 left: Math.min(...xs), right: Math.max(...xs),
                 top: Math.min(...ys), bottom: Math.max(...ys) };
        }"""
    )
    width, height = extent["width"], extent["height"]
    # every point, whole (at its largest), inside the canvas ...
    assert extent["left"] >= EDGE and extent["right"] <= width - EDGE
    assert extent["top"] >= EDGE and extent["bottom"] <= height - EDGE
    # ... and the map still fills it: the margin is a few percent of the shorter side, no more
    reach = max(
        width / 2 - extent["left"],
        extent["right"] - width / 2,
        height / 2 - extent["top"],
        extent["bottom"] - height / 2,
    )
    assert reach > 0.9 * min(width, height) / 2
    page.close()
