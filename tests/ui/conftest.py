"""Fixtures of the page tests: a headless Chromium per test, and sign-in through the form."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import browser
import pytest


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[browser.Browser]:
    browser.require()
    with browser.chromium(tmp_path / "profile") as b:
        yield b


@pytest.fixture
def sign_in(chromium: browser.Browser) -> Callable[[str, str], None]:
    """Open ``URL/ui/`` and sign in with ``token`` through the form."""

    def run(url: str, token: str) -> None:
        chromium.open(f"{url}/ui/")
        chromium.wait(lambda: chromium.visible("signin"), "the sign-in form")
        chromium.js("document.getElementById('token').value = arguments[0];"
                    "document.getElementById('signin-form').requestSubmit();", token)

    return run
