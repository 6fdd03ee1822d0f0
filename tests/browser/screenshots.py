"""The screenshots in docs/img: ``python tests/browser/screenshots.py DEMO_DIR SUFFIX`` opens the compare
and analyze HTML that ``ascend-doctor demo`` wrote into DEMO_DIR, and the shadow report of the demo's faulty
step (written there first), in headless Chromium at 1,280 px, and saves the whole page of each as
``docs/img/<name>-<SUFFIX>.png``. The same driver as the browser test (cdp.py). Run it with the
python of the checkout to shoot (``PYTHONPATH=CHECKOUT``)."""

import os
import sys

import cdp
import shadow_demo

from ascend_tools.report import write_report

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WIDTH, HEIGHT = 1280, 900
OPEN_DETAILS = "document.querySelectorAll('details').forEach(function (d) { d.open = true; })"


def main(demo_dir: str, suffix: str) -> None:
    write_report(shadow_demo.shadow_report(), "html", os.path.join(demo_dir, "shadow.html"))
    browser_path = cdp.find_browser()
    if browser_path is None:
        sys.exit("no Chromium on PATH: apt-get install chromium")
    with cdp.Browser(browser_path) as browser:
        for name in ("compare", "shadow", "analyze"):
            page = browser.page(WIDTH, HEIGHT)
            page.open("file://" + os.path.abspath(os.path.join(demo_dir, f"{name}.html")))
            page.eval(OPEN_DETAILS)  # collapsed big tables shown, as in the test
            out = os.path.join(ROOT, "docs", "img", f"{name}-{suffix}.png")
            page.screenshot(out)
            page.close()
            print(out)


if __name__ == "__main__":
    main(*sys.argv[1:])
