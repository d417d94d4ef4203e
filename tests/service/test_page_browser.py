"""The search page in a real headless Chromium (Debian ``chromium`` + ``chromium-driver``, driven by selenium).

Needs: ``apt-get install chromium chromium-driver`` and ``pip install selenium``. Without them the test is
skipped with a loud reason naming the missing package; set ``ARCSEARCH_REQUIRE_BROWSER=1`` (CI) to make
that a failure instead.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from arcsearch.service.app import create_app
from arcsearch.service.settings import Settings
from tests.service.demo_layout import index_like_the_demo
from tests.service.helpers import ServiceData, free_port, service_settings

CHROMIUM = os.environ.get("ARCSEARCH_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("ARCSEARCH_CHROMEDRIVER", "/usr/bin/chromedriver")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--window-size=1200,900"]
K = 6
SCREENSHOT = Path(tempfile.gettempdir()) / "arcsearch-page-demo.png"


def found(path: str, name: str) -> str | None:
    return path if Path(path).exists() else shutil.which(name)


def missing_browser_parts() -> list[str]:
    missing = []
    if not found(CHROMIUM, "chromium"):
        missing.append("Debian package 'chromium' (apt-get install chromium)")
    if not found(CHROMEDRIVER, "chromedriver"):
        missing.append("Debian package 'chromium-driver' (apt-get install chromium-driver)")
    if importlib.util.find_spec("selenium") is None:
        missing.append("Python package 'selenium' (pip install selenium)")
    return missing


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    missing = missing_browser_parts()
    if missing:
        message = "BROWSER TEST NOT RUN: missing " + "; ".join(missing)
        if os.environ.get("ARCSEARCH_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(found(CHROMIUM, "chromium"))
    profile = tempfile.mkdtemp(prefix="arcsearch-chromium-")
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    service = Service(executable_path=str(found(CHROMEDRIVER, "chromedriver")))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@contextlib.contextmanager
def served(settings: Settings) -> Iterator[str]:
    """The app under uvicorn in a thread on 127.0.0.1; yields its URL once its collections are loaded."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while not server.started or not server.config.loaded_app.app.state.registry.ready:  # type: ignore[union-attr]
            assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture(scope="module")
def page_url(service_data: ServiceData) -> Iterator[str]:
    """The shared collections; the faces folder is the data root (thumbnails)."""
    with served(service_settings(service_data, data_root=service_data.faces_dir.parent)) as url:
        yield url


@pytest.fixture(scope="module")
def demo_page_url(service_data: ServiceData, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An "images" collection indexed as ``make demo`` indexes it (a corpus path relative to the working
    folder) and served with the data root the demo gives, from another working folder."""
    demo = index_like_the_demo(tmp_path_factory.mktemp("demo"), embedder=service_data.image_embedder,
                               faces=service_data.faces_dir, people=[f"s{n}" for n in range(1, 6)], numbers=[1, 2, 3])
    with served(service_settings(service_data, collections_dir=demo.collections_dir, data_root=demo.data_root)) as url:
        yield url


def test_upload_an_image_and_see_result_cards(browser: object, page_url: str, service_data: ServiceData) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser  # a selenium WebDriver
    driver.get(page_url + "/")  # type: ignore[attr-defined]
    wait = WebDriverWait(driver, 60)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#collection option")) > 0)
    Select(driver.find_element(By.ID, "collection")).select_by_value("images")  # type: ignore[attr-defined]
    k_input = driver.find_element(By.ID, "k")  # type: ignore[attr-defined]
    k_input.clear()
    k_input.send_keys(str(K))
    query = service_data.faces_dir / "s1" / "1.pgm"
    driver.find_element(By.ID, "file").send_keys(str(query))  # type: ignore[attr-defined]
    driver.find_element(By.ID, "go").click()  # type: ignore[attr-defined]
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".result-card")) == K)
    cards = driver.find_elements(By.CSS_SELECTOR, ".result-card")  # type: ignore[attr-defined]
    assert "s1/1.pgm" in cards[0].text and "score 1.000" in cards[0].text
    assert all("score" in card.text for card in cards)
    wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, ".result-card img")))
    shown = "return [...document.querySelectorAll('.result-card img')].filter(i => i.naturalWidth > 0).length"
    wait.until(lambda d: d.execute_script(shown) >= 1)  # thumbnails of indexed files load
    assert "results from images" in driver.find_element(By.ID, "status").text  # type: ignore[attr-defined]


def test_a_demo_user_sees_thumbnails_and_the_preview_of_a_pgm(browser: object, demo_page_url: str,
                                                               service_data: ServiceData) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser  # a selenium WebDriver
    driver.get(demo_page_url + "/")  # type: ignore[attr-defined]
    wait = WebDriverWait(driver, 60)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#collection option")) > 0)
    k_input = driver.find_element(By.ID, "k")  # type: ignore[attr-defined]
    k_input.clear()
    k_input.send_keys(str(K))
    driver.find_element(By.ID, "file").send_keys(str(service_data.faces_dir / "s3" / "2.pgm"))  # type: ignore
    shown = "return document.getElementById('preview').naturalWidth"
    wait.until(lambda d: d.execute_script(shown) > 0)  # a PGM, which Chromium cannot show: the server's PNG
    driver.find_element(By.ID, "go").click()  # type: ignore[attr-defined]
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".result-card")) == K)
    loaded = ("return [...document.querySelectorAll('.result-card')].filter("
              "c => { const i = c.querySelector('img'); return i && i.complete && i.naturalWidth > 0; }).length")
    wait.until(lambda d: d.execute_script(loaded) == K or d.find_elements(By.CSS_SELECTOR, ".thumb-missing"))
    assert not driver.find_elements(By.CSS_SELECTOR, ".thumb-missing")  # type: ignore[attr-defined]
    assert driver.execute_script(loaded) == K  # type: ignore[attr-defined]
    assert "s3/2.pgm" in driver.find_elements(By.CSS_SELECTOR, ".result-card")[0].text  # type: ignore
    driver.save_screenshot(str(SCREENSHOT))  # type: ignore[attr-defined]


def test_type_a_text_and_see_snippets(browser: object, page_url: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    driver.get(page_url + "/")  # type: ignore[attr-defined]
    wait = WebDriverWait(driver, 60)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#collection option")) > 0)
    Select(driver.find_element(By.ID, "collection")).select_by_value("texts")  # type: ignore[attr-defined]
    assert driver.find_element(By.ID, "text").is_displayed()  # type: ignore[attr-defined]
    driver.find_element(By.ID, "text").send_keys("a domestic animal")  # type: ignore[attr-defined]
    driver.find_element(By.ID, "go").click()  # type: ignore[attr-defined]
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".result-card .snippet")) == 8)  # k defaults to 8
    assert not driver.find_elements(By.CSS_SELECTOR, ".result-card img")  # type: ignore[attr-defined]
