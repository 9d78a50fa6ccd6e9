"""Take the README's screenshot of the web app (headless Chromium) and time it.

Starts ``python -m fssam.app`` on a free loopback port with a checkpoint (default: make
demo's), uploads a support and two queries of one class of the synthetic dataset, clicks
twice on the support's object (from its label), runs, and saves the page as a PNG.
Prints the times of the first mask (the support's encoding included), of the second click
(SAM 2's decoder only) and from Run to the overlays.

    python scripts/app_screenshot.py --out docs/app.png   (or python -m fssam.tools.app_screenshot)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from fssam.app import drive
from fssam.app.logic import DEMO_CHECKPOINT


def pick_images(root: Path, class_id: int | None) -> tuple[list[Path], np.ndarray, int]:
    """A support, two queries of one class among the evaluation images (default: the
    most frequent of fold 0's novel classes, which the demo never trained on), and the
    support's object mask."""
    voc = root / "VOC2012"
    listed = voc / "ImageSets" / "Segmentation" / "val.txt"
    if not listed.is_file():
        raise SystemExit(f"no {listed}: make_toy_dataset.py or make demo writes it")
    labels = [voc / "SegmentationClassAug" / f"{n}.png" for n in listed.read_text().split()]
    present = {p: set(np.unique(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)).tolist()) - {0, 255}
               for p in labels}
    if class_id is None:
        class_id = max(range(1, 6), key=lambda c: sum(c in v for v in present.values()))
    chosen = [p for p in labels if class_id in present[p]][:3]
    images = [voc / "JPEGImages" / f"{p.stem}.jpg" for p in chosen]
    mask = cv2.imread(str(chosen[0]), cv2.IMREAD_GRAYSCALE) == class_id
    return images, mask, class_id


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=DEMO_CHECKPOINT)
    parser.add_argument("--data", type=Path, default=Path("data/toy"),
                        help="synthetic dataset root (PASCAL layout)")
    parser.add_argument("--class-id", type=int, help="class to show (default: the most frequent)")
    parser.add_argument("--model-flags", default="", help="passed to the app")
    parser.add_argument("--queries", type=int, default=2, help="query images (1 or 2)")
    parser.add_argument("--out", type=Path, default=Path("docs/app.png"))
    parser.add_argument("--width", type=int, default=1280)
    args = parser.parse_args(argv)
    images, mask, class_id = pick_images(args.data, args.class_id)
    images = images[:1 + args.queries]
    ys, xs = np.nonzero(mask)
    order = np.argsort((xs - xs.mean()) ** 2 + (ys - ys.mean()) ** 2)
    clicks = [(int(xs[order[0]]), int(ys[order[0]])), (int(xs[order[len(order) // 2]]),
                                                       int(ys[order[len(order) // 2]]))]
    work = Path(tempfile.mkdtemp(prefix="fssam_app_shot_"))
    process, url = drive.start_app(["--checkpoint", args.checkpoint, "--output",
                                    str(work / "out"), "--model-flags", args.model_flags],
                                   cwd=Path.cwd())
    driver = drive.browser(work / "downloads", size=(args.width, 1600))
    try:
        driver.get(url)
        drive.upload(driver, "support0_file", images[0])
        drive.wait_until(lambda: images[0].stem in drive.text(driver, "support0_info"),
                         what="the support")
        times = []
        for count, (x, y) in enumerate(clicks, 1):
            start = time.perf_counter()
            drive.click_pixel(driver, "support0_view", x, y, mask.shape[::-1])
            drive.wait_until(lambda: drive.text(driver, "support0_info").count(",+") == count
                             and "% of the image" in drive.text(driver, "support0_info"),
                             what="the support mask", timeout=300)
            times.append(time.perf_counter() - start)
        drive.upload(driver, "queries", *images[1:])
        drive.wait_until(lambda: images[-1].stem in drive.text(driver, "queries"),
                         what="the queries")
        start = time.perf_counter()
        drive.css(driver, "#run").click()
        drive.wait_until(lambda: len(driver.find_elements("css selector", "#gallery img"))
                         >= len(images) - 1,
                         what="the overlays", timeout=600)
        run = time.perf_counter() - start
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(args.width, height + 40)
        time.sleep(1.0)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(args.out))
        print(f"class {class_id}; first mask (support encoded) {times[0]:.2f} s, second click "
              f"{times[1]:.2f} s, Run to overlays ({len(images) - 1} queries) {run:.2f} s; "
              f"status: {drive.text(driver, 'status')}")
        print(f"screenshot: {args.out}")
    finally:
        driver.quit()
        process.terminate()
        process.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
