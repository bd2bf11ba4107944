"""Open the built documentation in headless Chromium and screenshot four pages.

Run after building the site (see README, "Documentation")::

    .venv/bin/python docs/screenshots.py [--out DIR]

It checks that the pages exist, screenshots the home page, a user-guide page
with math (the method), the API page of the estimator and one gallery example
with its plot, and fails if Chromium is missing, fails, or writes an empty
image. Look at the PNGs: this is a visual check that the theme, MathJax and
the gallery's figures render in a real browser. Debian's package is
``chromium`` (``apt-get install -y chromium``).

The site loads MathJax from its CDN. On a machine without network, pass a
local MathJax with ``--mathjax`` (Debian: ``apt-get install -y libjs-mathjax``,
then ``--mathjax /usr/share/javascript/mathjax/MathJax.js``, MathJax 2): the
pages are copied to a temporary folder and the copies load that MathJax
instead; the built site is left as it is.
"""

import argparse
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

HTML = pathlib.Path(__file__).resolve().parent / "_build" / "html"
PAGES = {
    "home": "index.html",
    "user_guide_method_math": "user_guide/method.html",
    "api_estimator": "api/generated/sklearn_winfair.FairLowRankFineTuner.html",
    "gallery_pareto_front": "auto_examples/fairness/plot_pareto_front.html",
}
# Window height of each shot: long enough to reach the plot of the example.
HEIGHTS = {"gallery_pareto_front": 4400}
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    # MathJax typesets after load; give scripts time before the capture.
    "--virtual-time-budget=15000",
]


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("chromium not found: apt-get install -y chromium")


_MATHJAX_TAG = re.compile(r'<script[^>]*src="[^"]*mathjax[^"]*"[^>]*></script>', re.I)


def _with_local_mathjax(html, mathjax, workdir):
    """Copy the site to ``workdir``; its pages load the MathJax at ``mathjax``."""
    copy = pathlib.Path(workdir) / "html"
    shutil.copytree(html, copy)
    src = pathlib.Path(mathjax).resolve().as_uri() + "?config=TeX-AMS-MML_HTMLorMML"
    tag = f'<script src="{src}"></script>'
    for page in PAGES.values():
        path = copy / page
        text = path.read_text(encoding="utf-8")
        if "class=\"math" in text:
            text, n = _MATHJAX_TAG.subn(tag, text)
            if n != 1:
                sys.exit(f"{page}: expected one MathJax script tag, found {n}")
            path.write_text(text, encoding="utf-8")
    return copy


def main(argv=None):
    """Screenshot the pages into ``--out``; return the list of PNG paths."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/_build/screenshots")
    parser.add_argument("--html", default=str(HTML))
    parser.add_argument(
        "--mathjax", default=None, help="local MathJax.js (MathJax 2) to load offline"
    )
    args = parser.parse_args(argv)
    html, out = pathlib.Path(args.html), pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    browser = _chromium()
    shots = []
    workdir = tempfile.TemporaryDirectory()
    if args.mathjax:
        html = _with_local_mathjax(html, args.mathjax, workdir.name)
    for name, page in PAGES.items():
        path = html / page
        if not path.exists():
            sys.exit(f"{path} does not exist: build the site first")
        png = out / f"{name}.png"
        height = HEIGHTS.get(name, 1600)
        with tempfile.TemporaryDirectory() as profile:
            subprocess.run(
                [browser, *FLAGS, f"--user-data-dir={profile}",
                 f"--screenshot={png.resolve()}", f"--window-size=1280,{height}",
                 path.resolve().as_uri()],
                check=True, capture_output=True, timeout=120,
            )
        if not png.exists() or png.stat().st_size < 10_000:
            sys.exit(f"{png} is missing or nearly empty")
        print(f"{png}  <-  {page}")
        shots.append(png)
    workdir.cleanup()
    return shots


if __name__ == "__main__":
    main()
