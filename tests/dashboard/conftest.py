"""Fixtures for the dashboard tests: the real processes, and headless Chromium driven by Selenium.

Chromium and its WebDriver come from Debian's ``chromium`` and ``chromium-driver`` packages,
which ``scripts/test`` installs when it runs as root on Debian. Where they are missing, the
browser test is skipped loudly (a warning in the summary, and the skip reason), never silently.
Selenium is pointed at both binaries, so Selenium Manager never tries to download anything.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from tests.e2e.stack import ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
#: Screenshots land here (gitignored), for people and CI to look at.
ARTIFACTS = ROOT / "test-artifacts"
#: A laptop screen.
WINDOW_SIZE = (1440, 900)
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    # Without these Chromium keeps trying to reach Google's servers, which this network lacks.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    f"--window-size={WINDOW_SIZE[0]},{WINDOW_SIZE[1]}",
)


@pytest.fixture
def browser(tmp_path, monkeypatch):
    """Headless Chromium with a fresh profile, its console log kept at every level."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("the selenium package (pip install -e '.[dev]')")
    if missing:
        reason = (
            f"DASHBOARD BROWSER TEST NOT RUN: {', '.join(missing)} missing. Install Debian's "
            "chromium and chromium-driver (scripts/test does so when run as root on Debian)."
        )
        warnings.warn(reason, stacklevel=1)
        pytest.skip(reason)
    monkeypatch.setenv("SE_OFFLINE", "true")  # belt and braces: Selenium Manager stays offline
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def save_screenshot(driver, name: str) -> Path:
    """Save what the browser shows as ``test-artifacts/<name>.png``; return its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure: save what the browser showed (tests/conftest.py attaches the logs)."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed or report.when not in ("setup", "call"):
        return
    funcargs = getattr(item, "funcargs", {})
    if funcargs.get("browser") is not None:
        try:
            path = save_screenshot(funcargs["browser"], f"{item.name}-failure")
            report.sections.append(("Dashboard screenshot", str(path)))
        except Exception as exc:  # noqa: BLE001 - the report must not fail on a dead browser
            report.sections.append(("Dashboard screenshot", f"not saved: {exc}"))
