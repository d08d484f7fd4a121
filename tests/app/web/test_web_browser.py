"""The explorer in a real browser: Playwright driving Debian's Chromium against `seethrough serve`.

Playwright's own browser download cannot work offline, so it is pointed at the system
Chromium (``.ci/run`` installs it with apt-get where it is missing). Each page must load
without console errors; the explain flow, a job's progress and result, and the latent
slider are driven end to end. Screenshots go to ``reports/test-output/web/``.
"""

from __future__ import annotations

import shutil

import pytest

CHROMIUM = next(
    (p for p in (shutil.which("chromium"), shutil.which("chromium-browser"), shutil.which("google-chrome")) if p), None
)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.xdist_group("web-browser"),
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium) for the browser tests"),
]
playwright = pytest.importorskip("playwright.sync_api", reason="the browser tests need playwright (test extra)")

ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PAGES = {"home": "/", "explain": "/explain", "trust": "/trust", "atlas": "/atlas", "latent": "/latent",
         "language": "/language", "jobs": "/jobs"}  # fmt: skip


def wait_attr(page, selector: str, attr: str, value: str, timeout: float = 60.0) -> None:
    """Poll an attribute from Python (the pages' CSP forbids the string eval of wait_for_function)."""
    loc = page.locator(selector)
    for _ in range(int(timeout * 10)):
        if loc.get_attribute(attr) == value:
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"{selector} [{attr}] is {loc.get_attribute(attr)!r}, not {value!r}, after {timeout} s")


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser):
    """A page that records console errors and uncaught exceptions."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = ctx.new_page()
    pg.errors = []  # type: ignore[attr-defined]
    pg.on("console", lambda m: m.type == "error" and pg.errors.append(f"console: {m.text}"))  # type: ignore[attr-defined]
    pg.on("pageerror", lambda e: pg.errors.append(f"pageerror: {e}"))  # type: ignore[attr-defined]
    yield pg
    ctx.close()


@pytest.mark.parametrize("name", list(PAGES))
def test_page_loads_without_console_errors(live_server, page, screenshots, name):
    resp = page.goto(live_server.url + PAGES[name], wait_until="networkidle")
    assert resp is not None and resp.status == 200
    assert page.locator("header nav a").count() == 7
    if name == "latent":  # its sliders arrive once the directions are fitted
        page.wait_for_selector("#latent-sliders input[type=range]", timeout=90_000)
        wait_attr(page, "#latent-image", "data-renders", "1")
    page.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)
    assert page.errors == []


def test_explain_flow(live_server, page, screenshots):
    page.goto(live_server.url + "/explain", wait_until="networkidle")
    page.locator(".thumb").nth(3).click()
    page.locator("input[name=methods][value=smoothgrad]").check()
    page.locator("#run-explain").click()
    page.wait_for_selector(".map[data-method=smoothgrad]", timeout=60_000)
    methods = page.locator(".map[data-method]").evaluate_all("els => els.map(e => e.dataset.method)")
    assert methods == ["saliency", "smoothgrad", "integrated_gradients", "gradcam"]
    assert page.locator(".map[data-method] table.scores tr").count() == 4 * 3  # deletion, insertion, mass
    img_ok = page.locator(".map img").evaluate_all("els => els.every(e => e.complete && e.naturalWidth > 100)")
    assert img_ok
    href = page.locator("a.download").get_attribute("href")
    assert href and href.startswith("/files/explain/") and href.endswith(".safetensors")
    with page.expect_download() as dl:
        page.locator("a.download").click()
    assert dl.value.suggested_filename.endswith(".safetensors")
    page.screenshot(path=str(screenshots / "explain-result.png"), full_page=True)
    assert page.errors == []


def test_a_job_shows_progress_and_its_result(live_server, page, screenshots):
    page.goto(live_server.url + "/trust", wait_until="networkidle")
    page.fill("input[name=n]", "3")
    page.locator("#trust-form summary", has_text="metric families").click()
    for fam in ("robustness", "complexity"):
        page.locator(f"input[name=families][value={fam}]").uncheck()
    page.locator("#trust-form button[type=submit]").click()
    page.wait_for_selector(".job[data-state=running]", timeout=60_000)
    seen = set()
    for _ in range(600):
        v = float(page.locator(".job progress").get_attribute("value") or 0)
        seen.add(round(v, 3))
        if page.locator(".job[data-state=done]").count():
            break
        page.wait_for_timeout(100)
    assert page.locator(".job[data-state=done]").count() == 1, page.locator(".job").inner_text()
    assert len([v for v in seen if 0 < v < 1]) >= 2, seen  # it advanced through intermediate values
    page.click("a.open-result")
    page.wait_for_selector("table.ranking")
    assert page.locator("table.ranking tbody tr").count() == 3
    page.screenshot(path=str(screenshots / "trust-report.png"), full_page=True)
    assert page.errors == []


def test_latent_slider_changes_the_image(live_server, page, screenshots):
    page.goto(live_server.url + "/latent", wait_until="networkidle")
    page.wait_for_selector("#latent-sliders input[type=range]", timeout=90_000)
    wait_attr(page, "#latent-image", "data-renders", "1")
    before = page.locator("#latent-image").screenshot()
    src = page.locator("#latent-image").get_attribute("src")
    slider = page.locator("#latent-sliders input[type=range]").first
    slider.evaluate("el => { el.value = '3'; el.dispatchEvent(new Event('input', {bubbles: true})); }")
    wait_attr(page, "#latent-image", "data-renders", "2")
    after = page.locator("#latent-image").screenshot()
    assert page.locator("#latent-image").get_attribute("src") != src and after != before
    page.screenshot(path=str(screenshots / "latent-moved.png"), full_page=True)
    assert page.errors == []


def test_language_page_heatmaps(live_server, page, screenshots):
    page.goto(live_server.url + "/language", wait_until="networkidle")
    page.locator("button[data-view=explain]").click()
    page.wait_for_selector("#language-result .st-token", timeout=120_000)
    assert page.locator("#language-result .st-tokens").count() == 4  # one row per default method
    page.locator("button[data-view=lens]").click()
    wait_attr(page, "#language-result", "data-view", "lens")
    page.screenshot(path=str(screenshots / "language-lens.png"), full_page=True)
    assert page.errors == []
