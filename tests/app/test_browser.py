"""The app end to end in a real browser (headless Chromium): a bad upload gets a message,
a support and a query from the synthetic data, two clicks, Run; the overlay appears and
the downloaded mask is predict.py's for the same inputs."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from fssam.app import drive
from fssam.predict import main as predict_main

from .conftest import object_pixels

REPO = Path(__file__).resolve().parents[2]
pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[app]')")
pytest.importorskip("gradio", reason="gradio is not installed (pip install -e '.[app]')")
if drive.find_browser() is None:
    pytest.skip("no chromium and chromedriver (apt-get install chromium chromium-driver, as "
                ".ci/run does)", allow_module_level=True)


@pytest.fixture
def app(app_files, tmp_path):
    process, url = drive.start_app(
        ["--checkpoint", str(app_files["ckpt"]), "--device", "cpu", "--output",
         str(tmp_path / "app")], cwd=REPO, env={"OMP_NUM_THREADS": "1"})
    driver = drive.browser(tmp_path / "downloads")
    try:
        driver.get(url)
        yield driver
    finally:
        driver.quit()
        process.terminate()
        process.wait(timeout=30)


def test_click_two_points_run_and_download(app, app_files, tmp_path):
    driver, support, query = app, app_files["supports"][0], app_files["queries"][0]
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    drive.upload(driver, "support0_file", bad)
    drive.wait_until(lambda: "⚠" in drive.text(driver, "support0_info"), what="the message")
    assert "notes.png is not an image" in drive.text(driver, "support0_info")
    drive.css(driver, "#support0_file button[aria-label=Clear]").click()
    drive.upload(driver, "support0_file", support)
    drive.wait_until(lambda: support.name in drive.text(driver, "support0_info"), what="upload")
    height, width = app_files["truth"][0].shape
    for count, (x, y) in enumerate(object_pixels(app_files["truth"][0], 2), 1):
        drive.click_pixel(driver, "support0_view", x, y, (width, height))
        drive.wait_until(lambda: drive.text(driver, "support0_info").count(",+") == count
                         and "mask" in drive.text(driver, "support0_info"), what="the mask")
    line = drive.text(driver, "support0_info")
    clicks = line.split("clicks")[1].split("·")[0].strip()  # as predict.py takes them
    assert "% of the image" in line and clicks.count(",+") == 2
    drive.upload(driver, "queries", query)
    drive.wait_until(lambda: query.stem in drive.text(driver, "queries"), what="the query")
    started = time.perf_counter()
    drive.css(driver, "#run").click()
    drive.css(driver, "#gallery img", timeout=120)
    seconds = time.perf_counter() - started
    assert "1 query in" in drive.text(driver, "status"), drive.text(driver, "status")
    link = drive.wait_until(lambda: next((a for a in driver.find_elements(
        "css selector", "#files a") if a.get_attribute("download") == f"{query.stem}_mask.png"),
        None), what="the mask's link")
    link.click()
    downloaded = drive.wait_until(lambda: next(
        (p for p in (tmp_path / "downloads").glob("*.png")), None), what="the download")
    out = tmp_path / "predict"
    assert predict_main(["--checkpoint", str(app_files["ckpt"]), "--device", "cpu",
                         "--support-images", str(support), "--support-points", clicks,
                         "--query", str(query), "--output", str(out)]) == 0
    expected = cv2.imread(str(out / f"{query.stem}_mask.png"), cv2.IMREAD_UNCHANGED)
    got = cv2.imread(str(downloaded), cv2.IMREAD_UNCHANGED)
    assert got.shape == expected.shape and 0 < (expected == 255).mean() < 1
    np.testing.assert_array_equal(got, expected)
    print(f"app: Run to overlay {seconds:.2f} s (micro model, one query)")
