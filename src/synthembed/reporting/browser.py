"""Open a report in headless Chromium and check what a reader would see; optionally save screenshots.

    python -m synthembed.reporting.browser runs/demo/report.html --screenshots docs/img

Uses Debian's Chromium (``/usr/bin/chromium``, or ``$SYNTHEMBED_CHROMIUM``; scripts/setup-browser.sh
installs it) driven by Playwright with ``executable_path``: no browser is downloaded at run time.
Checks at each width: no console error, every image loaded (non-zero natural size), the page's sections and
tables present, every table a real ``<table>``, every in-page link has its target, and no horizontal page
scroll (``scrollWidth <= innerWidth``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

WIDTHS = (1280, 390)
SECTIONS = ("warnings", "scores", "training", "data", "checks", "stages")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
)


class BrowserMissing(RuntimeError):
    """Chromium or the Playwright package is not installed (the message says how to install it)."""


def chromium_path() -> Path:
    path = Path(os.environ.get("SYNTHEMBED_CHROMIUM", "/usr/bin/chromium"))
    if not path.is_file():
        raise BrowserMissing(f"Chromium not found at {path}: run `bash scripts/setup-browser.sh` as root "
                             "(apt-get install chromium chromium-driver), or set SYNTHEMBED_CHROMIUM")
    return path


@dataclass
class WidthCheck:
    width: int
    scroll_width: int
    inner_width: int
    images: int
    broken_images: list[str]
    tables: int
    fake_tables: int  # Markdown tables left as text: lines of pipes and dashes
    missing_sections: list[str]
    dead_links: list[str]
    screenshot: Path | None

    @property
    def problems(self) -> list[str]:
        out = []
        if self.scroll_width > self.inner_width:
            out.append(f"{self.width}px: the page scrolls sideways (scrollWidth {self.scroll_width} > innerWidth {self.inner_width})")
        out += [f"{self.width}px: image not loaded: {alt}" for alt in self.broken_images]
        if self.fake_tables:
            out.append(f"{self.width}px: {self.fake_tables} table(s) written as text, not <table>")
        out += [f"{self.width}px: section missing: {s}" for s in self.missing_sections]
        out += [f"{self.width}px: link without a target: {href}" for href in self.dead_links]
        return out


@dataclass
class BrowserCheck:
    console_errors: list[str] = field(default_factory=list)
    widths: list[WidthCheck] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return [f"console error: {e}" for e in self.console_errors] + [p for w in self.widths for p in w.problems]


_PROBE = """() => {
  const sections = %s;
  const ids = new Set([...document.querySelectorAll('[id]')].map(e => e.id));
  const missing = sections.filter(s => ![...ids].some(id => id === s || id.endsWith('-' + s)));
  const images = [...document.images];
  const broken = images.filter(i => !i.complete || i.naturalWidth === 0 || i.naturalHeight === 0).map(i => i.alt || i.src.slice(0, 40));
  const dead = [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href'))
      .filter(h => h.startsWith('#') ? !document.getElementById(h.slice(1)) : !/^(https?:|mailto:)/.test(h));
  const text = document.body.innerText;
  const fake = (text.match(/^\\s*\\|?\\s*:?-{3,}:?\\s*\\|/gm) || []).length;
  return {scroll: document.documentElement.scrollWidth, inner: window.innerWidth, images: images.length,
          broken, tables: document.querySelectorAll('table').length, fake, missing, dead};
}"""


def check_report(html: Path, *, widths: tuple[int, ...] = WIDTHS, screenshots: Path | None = None, sections: tuple[str, ...] = SECTIONS) -> BrowserCheck:
    """Load `html` at each width in headless Chromium; return what it found (and save full-page PNGs)."""
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise BrowserMissing("the playwright package is missing: pip install -e '.[dev]'") from exc
    import json

    result = BrowserCheck()
    url = Path(html).resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="synthembed-chromium-") as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=str(executable), headless=True, args=list(FLAGS), viewport={"width": widths[0], "height": 900},
        )
        try:
            for width in widths:
                page = context.new_page()
                page.set_viewport_size({"width": width, "height": 900})
                page.on("console", lambda m: result.console_errors.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: result.console_errors.append(str(e)))
                page.goto(url, wait_until="load")
                page.wait_for_function("() => [...document.images].every(i => i.complete)")
                probe = page.evaluate(_PROBE % json.dumps(list(sections)))
                shot = None
                if screenshots is not None:
                    screenshots.mkdir(parents=True, exist_ok=True)
                    shot = screenshots / f"report-{width}px.png"
                    page.screenshot(path=str(shot), full_page=True)
                result.widths.append(WidthCheck(
                    width, probe["scroll"], probe["inner"], probe["images"], probe["broken"], probe["tables"],
                    probe["fake"], probe["missing"], probe["dead"], shot,
                ))
                page.close()
        finally:
            context.close()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m synthembed.reporting.browser", description=__doc__.split("\n\n")[0])
    parser.add_argument("html", type=Path)
    parser.add_argument("--screenshots", type=Path, default=None, help="folder for report-<width>px.png")
    args = parser.parse_args(argv)
    if not args.html.is_file():
        print(f"{args.html}: no such file", file=sys.stderr)
        return 2
    try:
        check = check_report(args.html, screenshots=args.screenshots)
    except BrowserMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for width in check.widths:
        print(f"{width.width}px: scrollWidth {width.scroll_width} / innerWidth {width.inner_width}, {width.images} images, "
              f"{width.tables} tables" + (f", screenshot {width.screenshot}" if width.screenshot else ""))
    for problem in check.problems:
        print(f"PROBLEM: {problem}")
    return 1 if check.problems else 0


if __name__ == "__main__":
    sys.exit(main())
