"""Driving the app in a headless Chromium (selenium): its browser test and the README's
screenshot (``scripts/app_screenshot.py``) start it, upload, click and read it the same way.

Chromium is Debian's (``apt-get install chromium chromium-driver``); it starts with the
flags a machine without network needs (no background networking, component updates or
sync, a fresh profile), else it may hang.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run")
BROWSERS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
DRIVERS = ("/usr/bin/chromedriver",)


def find_browser() -> tuple[str, str] | None:
    """(chromium, chromedriver) paths, or None when either is missing."""
    browser = next((b for b in BROWSERS if os.access(b, os.X_OK)), shutil.which("chromium"))
    driver = next((d for d in DRIVERS if os.access(d, os.X_OK)), shutil.which("chromedriver"))
    return (browser, driver) if browser and driver else None


def start_app(args: Sequence[str], *, cwd: Path, env: dict[str, str] | None = None,
              timeout: float = 180) -> tuple[subprocess.Popen, str]:
    """``python -m fssam.app --port 0 ARGS`` in the background; returns it and its URL once
    the page answers."""
    process = subprocess.Popen([sys.executable, "-m", "fssam.app", "--port", "0", *args],
                               cwd=cwd, env={**os.environ, **(env or {})}, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline, url = time.monotonic() + timeout, None
    lines: list[str] = []
    while url is None:
        line = process.stdout.readline()
        if not line or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("the app did not start:\n" + "".join(lines[-40:]))
        lines.append(line)
        if line.startswith("FSSAM app: "):
            url = line.split(": ", 1)[1].strip()
    _drain(process)
    wait_until(lambda: _answers(url), timeout=deadline - time.monotonic(), what="the page")
    return process, url


def _drain(process: subprocess.Popen) -> None:
    """Keep reading the app's output so it never blocks on a full pipe."""
    import threading
    threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def wait_until(check: Callable[[], Any], *, timeout: float = 60, what: str = "condition",
               every: float = 0.2) -> Any:
    """``check()``'s first truthy value, polled until ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(every)


def browser(download_dir: Path, size: tuple[int, int] = (1400, 2000)):
    """A headless Chromium (selenium WebDriver) that downloads into ``download_dir``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = find_browser()
    if found is None:
        raise RuntimeError("no chromium/chromedriver (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}",
                 f"--window-size={size[0]},{size[1]}"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"download.default_directory": str(download_dir),
                                              "download.prompt_for_download": False})
    return webdriver.Chrome(service=Service(found[1]), options=options)


def css(driver, selector: str, *, timeout: float = 30):
    """The first element matching ``selector`` once it exists."""
    from selenium.webdriver.common.by import By
    return wait_until(lambda: next(iter(driver.find_elements(By.CSS_SELECTOR, selector)), None),
                      timeout=timeout, what=selector)


def text(driver, elem_id: str) -> str:
    """The visible text of the component ``elem_id``."""
    return css(driver, f"#{elem_id}").text


def upload(driver, elem_id: str, *paths: Path) -> None:
    """Give files to the file component ``elem_id``."""
    css(driver, f"#{elem_id} input[type=file]").send_keys("\n".join(str(p) for p in paths))


def click_pixel(driver, elem_id: str, x: float, y: float, natural: tuple[int, int]) -> None:
    """Click the image of component ``elem_id`` at image pixel (x, y) of its (W, H) image."""
    from selenium.webdriver.common.action_chains import ActionChains

    image = css(driver, f"#{elem_id} img")
    width, height = image.size["width"], image.size["height"]
    dx = (x + 0.5) * width / natural[0] - width / 2
    dy = (y + 0.5) * height / natural[1] - height / 2
    ActionChains(driver).move_to_element_with_offset(image, round(dx), round(dy)).click().perform()
