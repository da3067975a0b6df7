"""Open the built book in headless Chromium and check every page as a reader would see it.

For each page of ``_toc.yml`` the check fails on:

- a console error or an uncaught JavaScript exception;
- a request that failed, or any request to another host (the book must work offline);
- math that MathJax did not typeset (a ``.math`` element without its ``mjx-container``, or
  a TeX error ``mjx-merror``);
- an image that did not load, or Markdown left as text (``![...](...)``); a lecture without a
  figure in its outputs, without the Colab launch button, or without executed outputs.

It saves screenshots of the home page and of one chapter. Chromium is Debian's
(``/usr/bin/chromium``, or ``$CHROMIUM``), driven by Playwright without downloading a browser.

Usage: ``python tools/check_book.py _build/html --screenshots _build/screenshots``
(``make check-book`` builds the book in quick mode and runs it).
"""
from __future__ import annotations

import argparse
import functools
import http.server
import os
import sys
import threading
from pathlib import Path

from execute_book import toc_files  # tools/, next to this script

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-default-apps"]


def toc_pages() -> list[str]:
    return toc_files()


def serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


CHECK_JS = """async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  const imgs = [...document.images];
  await Promise.all(imgs.map(i => i.complete ? null : new Promise(r => { i.onload = i.onerror = r; })));
  return {
    math: document.querySelectorAll('.math').length,
    typeset: document.querySelectorAll('.math mjx-container, mjx-container.MathJax').length,
    merror: document.querySelectorAll('mjx-merror').length,
    broken: imgs.filter(i => !(i.naturalWidth > 0)).map(i => (i.getAttribute('src') || '').slice(0, 80)),
    figures: document.querySelectorAll('.cell_output img').length,
    outputs: document.querySelectorAll('.cell_output').length,
    colab: [...document.querySelectorAll('a')].filter(a => a.href.startsWith('https://colab.research.google.com/github/')
                                                       && !a.closest('.cell, .cell_output, article')).length,
    unrendered: [...document.querySelectorAll('article p, article li, article h1, article h2, article td')]
      .map(e => e.innerText).filter(t => /!\[|\]\((https?|data):/.test(t)).map(t => t.slice(0, 80)),
    title: document.title,
  };
}"""


def check(html: Path, shots: Path | None) -> list[str]:
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    server, base = serve(html)
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=FLAGS)
            for page_name in toc_pages():
                url = f"{base}/{page_name}.html"
                errors: list[str] = []
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(base)
                           else (errors.append(f"request to another host: {route.request.url[:100]}"), route.abort()))
                page.on("console", lambda m: errors.append(f"console {m.type}: {m.text[:200]}")
                        if m.type == "error" else None)
                page.on("pageerror", lambda e: errors.append(f"uncaught exception: {str(e)[:200]}"))
                page.on("requestfailed", lambda r: errors.append(f"failed request: {r.url[:100]}")
                        if r.url.startswith(base) else None)
                page.on("response", lambda r: errors.append(f"HTTP {r.status}: {r.url[:100]}") if r.status >= 400
                        else None)
                response = page.goto(url, wait_until="load")
                if response is None or response.status != 200:
                    problems.append(f"{page_name}: not found ({url})")
                    page.close()
                    continue
                info = page.evaluate(CHECK_JS)
                page.wait_for_timeout(200)
                if info["math"] and info["typeset"] < info["math"]:
                    errors.append(f"math not rendered: {info['typeset']} of {info['math']} formulas typeset")
                if info["merror"]:
                    errors.append(f"{info['merror']} TeX error(s) in the math")
                errors += [f"image did not load: {src}" for src in info["broken"]]
                errors += [f"Markdown shown as text: {text}" for text in info["unrendered"]]
                if page_name.startswith("lectures/"):
                    if not info["outputs"]:
                        errors.append("no executed outputs")
                    if not info["figures"]:
                        errors.append("no figure in the outputs")
                    if not info["colab"]:
                        errors.append("no Colab launch button")
                print(f"{'ok ' if not errors else 'BAD'} {page_name}: {info['typeset']}/{info['math']} formulas, "
                      f"{info['figures']} figures, {info['outputs']} outputs", flush=True)
                problems += [f"{page_name}: {e}" for e in errors]
                if shots is not None and page_name in (toc_pages()[0], "lectures/02_metric_learning"):
                    shots.mkdir(parents=True, exist_ok=True)
                    name = "home" if page_name == toc_pages()[0] else Path(page_name).name
                    page.screenshot(path=str(shots / f"{name}.png"), full_page=False)
                page.close()
            browser.close()
    finally:
        server.shutdown()
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", type=Path, help="the built book, e.g. _build/html")
    parser.add_argument("--screenshots", type=Path, help="folder for screenshots of the home page and a chapter")
    args = parser.parse_args()
    if not (args.html / "index.html").exists():
        print(f"{args.html} holds no built book (no index.html): run `make book` first", file=sys.stderr)
        return 2
    problems = check(args.html, args.screenshots)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
    print(f"{len(toc_pages())} pages checked: " + ("all good" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
