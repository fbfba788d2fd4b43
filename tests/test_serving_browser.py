"""The explorer page in headless Chromium (Debian's chromium + chromium-driver, driven by Selenium): type a query,
pick items into the history, see recommendations with titles, open an item, add an item and find it.

Skips when Chromium, its driver or Selenium is missing, unless SEMREC_REQUIRE_BROWSER=1 (then it fails).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time

import pytest

REQUIRED = os.environ.get("SEMREC_REQUIRE_BROWSER", "") not in ("", "0")
KEY = "browser-key"


def _need(ok: bool, what: str) -> None:
    if not ok:
        if REQUIRED:
            pytest.fail(f"{what} is missing and SEMREC_REQUIRE_BROWSER=1")
        pytest.skip(f"{what} is missing (apt-get install chromium chromium-driver; pip install selenium)")


@pytest.fixture(scope="module")
def browser():
    try:
        from selenium import webdriver
    except ImportError:
        webdriver = None
    _need(webdriver is not None, "selenium")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    _need(chromium is not None and driver_path is not None, "chromium / chromedriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,900",
                # every host but this machine's is unreachable: the pages must work offline
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        opts.add_argument(arg)
    drv = webdriver.Chrome(service=Service(driver_path), options=opts)
    yield drv
    drv.quit()


@pytest.fixture(scope="module")
def server(serving_sasrec, tmp_path_factory):
    import uvicorn

    from semrec.serving import Engine, create_app

    _, ds, run = serving_sasrec
    engine = Engine.from_run(run, state_dir=tmp_path_factory.mktemp("browser-state"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(engine, api_key=KEY), host="127.0.0.1", port=port,
                                        log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", ds
    srv.should_exit = True
    thread.join(timeout=10)


def _rows(drv, css: str) -> list[tuple[str, str, str]]:
    """(data-id, text, class) of the elements matching `css`, read in one script call (no stale references)."""
    return [tuple(r) for r in drv.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(e => [e.dataset.id || '', e.textContent, "
        "e.className]);", css)]


def _wait(drv, css: str, n: int = 1, text: str | None = None, timeout: float = 30) -> list[tuple[str, str, str]]:
    """The rows of `css` once at least n are there (holding `text`) and two reads 0.2 s apart agree."""
    deadline, last = time.time() + timeout, None
    while time.time() < deadline:
        rows = _rows(drv, css)
        ok = len(rows) >= n and (text is None or any(text in r[1] for r in rows))
        if ok and rows == last:
            return rows
        last = rows if ok else None
        time.sleep(0.2)
    raise AssertionError(f"{css!r} ({n}, {text!r}) did not appear; page: "
                         f"{drv.execute_script('return document.body.innerText')[:800]}")


def _click(drv, css: str) -> None:
    drv.execute_script("document.querySelector(arguments[0]).click();", css)


def test_explorer_search_history_recommend_add(browser, server, tmp_path):
    from selenium.webdriver.common.by import By

    url, ds = server
    browser.get(url + "/")
    _wait(browser, "#run", text="sasrec")
    browser.find_element(By.ID, "q").send_keys("beauty")
    results = _wait(browser, "#results li", n=2)
    picked = [r[0] for r in results[:2]]
    _click(browser, "#results li:nth-child(1) button")
    _click(browser, "#results li:nth-child(2) button")
    assert [r[0] for r in _wait(browser, "#history li", n=2)] == picked
    _wait(browser, "#recinfo", text="20 items from sasrec")
    recs = _wait(browser, "#recs li", n=20)
    titles = dict(zip(ds.items["item_id"].to_list(), ds.items["title"].to_list()))
    rec_ids = [r[0] for r in recs]
    assert len(rec_ids) == 20 and not set(rec_ids) & set(picked)  # exclude-history is on by default
    assert all(titles[i] in text for i, text, _ in recs)
    want = httpx_recommend(url, picked)
    assert rec_ids == want  # the page shows exactly what the API answers
    _click(browser, "#recs li .title")
    _wait(browser, "#item", text=rec_ids[0])
    # add a new item through the form, then find it by search
    browser.find_element(By.ID, "new_id").send_keys("BROWSER-1")
    browser.find_element(By.ID, "new_title").send_keys("Quokka velvet lip balm")
    browser.find_element(By.ID, "key").send_keys(KEY)
    browser.find_element(By.ID, "add").click()
    _wait(browser, "#addinfo", text="BROWSER-1: added")
    q = browser.find_element(By.ID, "q")
    q.clear()
    q.send_keys("quokka velvet")
    found = _wait(browser, "#results li", text="Quokka velvet lip balm")
    assert found[0][0] == "BROWSER-1" and "new" in found[0][2]
    browser.save_screenshot(str(tmp_path / "explorer.png"))


def test_api_docs_render_offline(browser, server):
    """Swagger UI (/docs) and ReDoc (/redoc) render the OpenAPI 3.1 schema with scripts served by the app, in a
    browser that can reach no other host."""
    url, _ = server
    browser.get(url + "/docs")
    paths = {r[1] for r in _wait(browser, ".opblock-summary-path", n=8)}
    assert {"/recommend", "/recommend/batch", "/items", "/items/{item_id}", "/health", "/metrics"} <= paths
    browser.get(url + "/redoc")
    _wait(browser, "h2", text="Top-k items for one history")


def httpx_recommend(url: str, history: list[str]) -> list[str]:
    import httpx

    body = httpx.post(url + "/recommend", json={"history": history, "k": 20, "exclude_seen": True}).json()
    return [x["item_id"] for x in body["items"]]
