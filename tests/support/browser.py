"""A real headless Chromium for the page tests: Debian's ``chromium`` driven through its
``chromium-driver`` by Selenium (``scripts/test`` installs both; nothing is downloaded).

:class:`Browser` keeps what the page did: every request Chromium sent (its DevTools network log,
so also a request the page made and that failed) and every console message.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# As root in a container, and quiet: without the background-networking flags Chromium calls
# Google's hosts at start, which this machine refuses (and which would show as requests).
FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-extensions",
    "--disable-default-apps", "--metrics-recording-only", "--window-size=1500,1000",
    "--force-device-scale-factor=1",
]


def missing() -> str | None:
    """Why the browser tests cannot run here (None when they can)."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists() and not shutil.which(Path(path).name):
            return f"{path} is missing (Debian packages chromium and chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    return None


def require() -> None:
    """Skip without a browser, except under CI, where that fails."""
    import os

    why = missing()
    if why is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"the browser tests cannot run: {why}")
    pytest.skip(why)


@dataclass
class Browser:
    driver: Any
    requests: list[str] = field(default_factory=list)
    console: list[dict[str, Any]] = field(default_factory=list)

    def collect(self) -> None:
        """Drain Chromium's logs into :attr:`requests` and :attr:`console`."""
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message.get("method") == "Network.requestWillBeSent":
                params = message["params"]
                # the browser's own new-tab page (chrome://, never the network) is not the page's
                if not str(params.get("documentURL", "")).startswith("chrome://"):
                    self.requests.append(params["request"]["url"])
        self.console.extend(self.driver.get_log("browser"))

    def errors(self) -> list[str]:
        self.collect()
        return [c["message"] for c in self.console if c.get("level") == "SEVERE"]

    def open(self, url: str) -> None:
        """Go to ``url``; what was logged before (the browser's own start page) is dropped."""
        self.collect()
        self.requests.clear()
        self.console.clear()
        self.driver.get(url)

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def wait(self, condition: Callable[[], Any], what: str, timeout: float = 15) -> Any:
        return wait_for(condition, what, timeout, pause=0.05)

    def visible(self, element_id: str) -> bool:
        return bool(self.js(
            "var e = document.getElementById(arguments[0]);"
            "return !!e && !e.hidden && e.getClientRects().length > 0;", element_id))

    def ids(self, selector: str) -> list[str]:
        return list(self.js(
            "return Array.from(document.querySelectorAll(arguments[0]))"
            ".map(function (e) { return e.getAttribute('data-id'); });", selector))

    def text(self, selector: str) -> str:
        return str(self.js("var e = document.querySelector(arguments[0]);"
                           "return e ? e.textContent : '';", selector))

    def offline(self) -> None:
        """No network from here on (DevTools' network emulation)."""
        self.driver.execute_cdp_cmd("Network.enable", {})
        self.driver.execute_cdp_cmd("Network.emulateNetworkConditions", {
            "offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})


@contextmanager
def chromium(profile: Path) -> Iterator[Browser]:
    """A fresh headless Chromium with an empty profile in ``profile``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        driver.set_page_load_timeout(30)
        yield Browser(driver)
    finally:
        driver.quit()
