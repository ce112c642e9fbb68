"""A headless Debian chromium driven by Selenium through Debian's chromium-driver, for the
web UI tests: console errors collected, screenshots into ``docs/ui/``."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from tests.peers import require
from tests.registry.server import REPO_ROOT

T = TypeVar("T")

SCREENSHOTS = REPO_ROOT / "docs" / "ui"
WAIT_SECONDS = 20
PAGE_LOAD_SECONDS = 60


class Browser:
    """One chromium for the session; ``base`` is the registry's URL."""

    def __init__(self, log_path: Path) -> None:
        options = webdriver.ChromeOptions()
        options.binary_location = require("chromium")
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1360,900",
                     "--ignore-certificate-errors", "--no-first-run",
                     "--disable-background-networking", "--disable-extensions",
                     "--disable-component-update", "--disable-sync"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        service = Service(executable_path=require("chromedriver"), log_output=str(log_path))
        self.driver = webdriver.Chrome(options=options, service=service)
        self.driver.set_page_load_timeout(PAGE_LOAD_SECONDS)
        self.driver.set_script_timeout(WAIT_SECONDS)
        self.base = ""

    def open(self, path: str) -> None:
        """Load ``base + path`` and wait for the page."""
        self.driver.get(self.base + path)
        self.wait_for("main")

    def wait_for(self, selector: str) -> WebElement:
        """The first element matching the CSS ``selector``, once it is there."""
        found: WebElement = WebDriverWait(self.driver, WAIT_SECONDS).until(
            expected_conditions.presence_of_element_located((By.CSS_SELECTOR, selector)))
        return found

    def find(self, selector: str) -> WebElement:
        """The first element matching ``selector`` (NoSuchElementException otherwise)."""
        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def find_all(self, selector: str) -> list[WebElement]:
        """Every element matching ``selector``."""
        return list(self.driver.find_elements(By.CSS_SELECTOR, selector))

    def on(self, selector: str, act: Callable[[WebElement], T]) -> T:
        """``act`` on the element ``selector`` finds; found again when chromium says the
        node it found is gone from the document (it does so now and then right after a page
        load, before anything was done to it)."""
        for attempt in range(3):
            try:
                return act(self.wait_for(selector))
            except StaleElementReferenceException:
                if attempt == 2:
                    raise
            except WebDriverException as exc:
                if "does not belong to the document" not in str(exc) or attempt == 2:
                    raise
            time.sleep(0.2)
        raise AssertionError("unreachable")

    def click(self, selector: str) -> None:
        """Click the element (a link or a submit button) and wait for the next page."""
        old = self.driver.find_element(By.TAG_NAME, "html")
        self.on(selector, lambda element: element.click())
        WebDriverWait(self.driver, WAIT_SECONDS).until(expected_conditions.staleness_of(old))
        self.wait_for("main")

    def text(self, selector: str = "main") -> str:
        """The visible text of an element."""
        return self.wait_for(selector).text

    @property
    def path(self) -> str:
        """The current URL without ``base``."""
        url: str = self.driver.current_url
        return url[len(self.base):] if url.startswith(self.base) else url

    def console_errors(self) -> list[dict[str, Any]]:
        """Console messages of level SEVERE since the last call (CSP violations, script
        errors, failed loads)."""
        return [entry for entry in self.driver.get_log("browser")
                if entry.get("level") == "SEVERE"]

    def cookies(self) -> dict[str, dict[str, Any]]:
        """The cookies of the current site by name."""
        return {c["name"]: c for c in self.driver.get_cookies()}

    def grant_clipboard(self) -> None:
        """Let the page read and write the clipboard (as a user would allow)."""
        origin = self.base
        self.driver.execute_cdp_cmd("Browser.grantPermissions", {
            "origin": origin,
            "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]})

    def clipboard(self) -> str:
        """The clipboard's text, as the page reads it."""
        text: str = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "navigator.clipboard.readText().then(done, e => done('ERROR ' + e));")
        return text

    def screenshot(self, name: str) -> Path:
        """Save the whole page (up to 2,400 pixels high) as ``docs/ui/<name>.png``."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        metrics = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
        size = metrics["cssContentSize"]
        shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"],
                     "height": min(2400, size["height"]), "scale": 1}})
        path = SCREENSHOTS / f"{name}.png"
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def quit(self) -> None:
        """Close the browser."""
        self.driver.quit()


def describe(entries: list[dict[str, Any]]) -> str:
    """Console entries for an assertion message."""
    return json.dumps(entries, indent=1)[:4000]
