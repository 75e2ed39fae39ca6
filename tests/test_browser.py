"""The built book, read the way a reader meets it: served on 127.0.0.1 and opened in headless Chromium.

Every HTML page of the build is loaded in Debian's ``chromium`` (driven over the Chrome DevTools protocol
with the ``websocket-client`` package, no browser download and no Selenium/Playwright), and must have

* its maths typeset: every ``.math`` element holds a MathJax container, MathJax reports no TeX error and no
  undefined control sequence, and no raw ``\\(``, ``\\[`` or ``\\begin{`` is left in the visible text;
* every image loaded (complete, with a non-zero natural width);
* every internal link (``<a>``/``<link>``) pointing at an existing file and, if it has one, an existing anchor;
* no console error, uncaught exception or failed local request (HTTP status >= 400);
* no request leaving 127.0.0.1: every request is intercepted, and one to another host is blocked and reported.

A full-page screenshot of each page (up to 12000 px tall, at half size unless
``$NOETHER_BOOK_SCREENSHOT_SCALE`` says otherwise) is written to ``_build/screenshots/`` (beside the HTML;
``$NOETHER_BOOK_SCREENSHOTS`` to change it), for inspection. The notebook pages must also offer the
download, Binder and Colab buttons, and every figure must link its exports and suggested citation (both
checked in the HTML).

Which build: ``$NOETHER_BOOK_HTML`` if set, else ``_build/html`` (made by ``python3.11 make.py book``). The
tests skip, saying why, when there is no build or no ``chromium``; with ``NOETHER_BOOK_BROWSER=required``
(as ``.ci/run`` sets it, after building the book) they fail instead. The checker itself is tested on small
synthetic sites (raw TeX without MathJax, TeX errors, a missing image, broken links, a console error, an
uncaught exception, requests to other hosts) and on a copy of the real build with a page's MathJax script
removed and one of its images deleted. ``/favicon.ico``, which the browser itself asks for, is not a page
request and may be missing.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import distribution
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("NOETHER_BOOK_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
REQUIRED = os.environ.get("NOETHER_BOOK_BROWSER") == "required"
PAGE_TIMEOUT_S = 30.0
MAX_SCREENSHOT_HEIGHT = 12000  # CSS pixels
SCREENSHOT_SCALE = float(os.environ.get("NOETHER_BOOK_SCREENSHOT_SCALE", "0.5"))  # half size: 3x faster to take
SKIP_DIRS = {"_static", "_images", "_sources", "_sphinx_design_static", "_panels_static"}


def unavailable(reason: str) -> None:
    """Skip, or fail when the browser test is required (``NOETHER_BOOK_BROWSER=required``)."""
    if REQUIRED:
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def built_html() -> Path:
    html = Path(os.environ.get("NOETHER_BOOK_HTML") or ROOT / "_build" / "html")
    if not (html / "index.html").is_file():
        unavailable(
            f"no built book at {html}: build it first with `python3.11 make.py book` "
            "(or set NOETHER_BOOK_HTML to the html folder of a build)"
        )
    return html


# --------------------------------------------------------------------------------------------------- serving
class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# --------------------------------------------------------------------------------------------- the browser
class DevToolsError(RuntimeError):
    pass


class Chromium:
    """Headless Chromium on a private profile, spoken to over one DevTools websocket (flattened sessions)."""

    FLAGS = (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-default-apps",
        "--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--hide-scrollbars",
        "--mute-audio",
        "--window-size=1280,900",
        "--force-device-scale-factor=1",
        "--remote-debugging-port=0",
    )

    def __init__(self, executable: str = CHROMIUM) -> None:
        import websocket  # websocket-client, a Jupyter dependency of the book's environment

        self._profile = tempfile.mkdtemp(prefix="noether-chromium-")
        self.process = subprocess.Popen(
            [executable, *self.FLAGS, f"--user-data-dir={self._profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.is_file() and len(port_file.read_text().split()) == 2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"{executable} did not start (exit status {self.process.poll()})")
            time.sleep(0.05)
        port, path = port_file.read_text().split()
        self._ws = websocket.create_connection(f"ws://127.0.0.1:{port}{path}", timeout=30, suppress_origin=True)
        self._timeout_error = websocket.WebSocketTimeoutException
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self.blocked: list[str] = []

    def close(self) -> None:
        if getattr(self, "_ws", None) is not None:
            try:
                self.send("Browser.close", timeout=5)
            except Exception:
                pass
            self._ws.close()
            self._ws = None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self._profile, ignore_errors=True)

    def _post(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self._ws.send(json.dumps(message))
        return self._next_id

    def _receive(self, deadline: float) -> dict[str, Any]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no answer from Chromium in time")
        self._ws.settimeout(remaining)
        try:
            message = json.loads(self._ws.recv())
        except self._timeout_error as error:
            raise TimeoutError("no answer from Chromium in time") from error
        if message.get("method") == "Fetch.requestPaused":
            self._decide(message)
        elif "method" in message:
            self.events.append(message)
        return message

    def _decide(self, message: dict[str, Any]) -> None:
        """Let requests to 127.0.0.1 through; block, and remember, every other one."""
        params, session = message["params"], message.get("sessionId")
        url = params["request"]["url"]
        if urlsplit(url).hostname == "127.0.0.1":
            self._post("Fetch.continueRequest", {"requestId": params["requestId"]}, session)
        else:
            self.blocked.append(url)
            self._post(
                "Fetch.failRequest", {"requestId": params["requestId"], "errorReason": "BlockedByClient"}, session
            )

    def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
        timeout: float = PAGE_TIMEOUT_S,
    ) -> dict[str, Any]:
        wanted = self._post(method, params, session)
        deadline = time.monotonic() + timeout
        while True:
            message = self._receive(deadline)
            if message.get("id") == wanted:
                if "error" in message:
                    raise DevToolsError(f"{method}: {message['error']}")
                return message.get("result", {})

    def wait_for(self, method: str, session: str, timeout: float = PAGE_TIMEOUT_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event["method"] == method and event.get("sessionId") == session:
                    return event
            self._receive(deadline)


# ------------------------------------------------------------------------------------------- page checks
#: Runs in the page after its load event: waits for MathJax and the images, and reports what it finds.
_INSPECT = r"""
(async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  const images = [...document.images];
  images.forEach(img => { img.loading = 'eager'; });
  await Promise.all(images.map(img => img.complete ? null :
    new Promise(done => { img.addEventListener('load', done); img.addEventListener('error', done);
                          setTimeout(done, 10000); })));
  await document.fonts.ready;
  const raw = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (node.parentElement && node.parentElement.closest('script,style,pre,code,textarea,mjx-container')) continue;
    const match = node.nodeValue.match(/\\\(|\\\[|\\begin\{/);
    if (match) raw.push(node.nodeValue.trim().slice(0, 80));
  }
  return {
    math: document.querySelectorAll('.math').length,
    typeset: document.querySelectorAll('mjx-container').length,
    untypeset: [...document.querySelectorAll('.math')].filter(e => !e.querySelector('mjx-container'))
                 .map(e => e.textContent.trim().slice(0, 80)),
    texErrors: [...document.querySelectorAll('mjx-merror')]
                 .map(e => e.getAttribute('data-mjx-error') || e.textContent)
                 .concat([...document.querySelectorAll('mjx-assistive-mml mtext[mathcolor="red"]')]
                   .map(e => e.textContent).filter(t => t.startsWith('\\'))
                   .map(t => 'undefined control sequence ' + t)),
    raw: raw,
    images: images.length,
    brokenImages: images.filter(img => !(img.complete && img.naturalWidth > 0))
                        .map(img => img.getAttribute('src')),
    links: [...document.querySelectorAll('a[href], link[href], area[href]')].map(a => a.href),
  };
})()
"""


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.anchors: set[str] = set()
        self.refresh: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.anchors.update(v for k, v in attrs if k in ("id", "name") and v)
        if tag == "meta" and (a.get("http-equiv") or "").lower() == "refresh":
            self.refresh = (a.get("content") or "").partition("url=")[2].strip() or None


def _parse(path: Path, cache: dict[Path, _Anchors]) -> _Anchors:
    if path not in cache:
        parser = _Anchors()
        parser.feed(path.read_text(encoding="utf-8", errors="replace"))
        cache[path] = parser
    return cache[path]


def link_problems(root: Path, base: str, links: list[str], cache: dict[Path, _Anchors]) -> list[str]:
    """Internal links (under ``base``) that miss their file or their anchor."""
    problems = []
    for link in sorted(set(links)):
        if not link.startswith(base):
            continue
        parts = urlsplit(link)
        relative = unquote(parts.path[len(urlsplit(base).path) :])
        target = root / relative
        if relative == "" or relative.endswith("/"):
            target = target / "index.html"
        if not target.is_file():
            problems.append(f"broken link: {link[len(base) :]} (no such file)")
        elif parts.fragment and target.suffix == ".html":
            if unquote(parts.fragment) not in _parse(target, cache).anchors:
                problems.append(f"broken link: {link[len(base) :]} (no anchor #{unquote(parts.fragment)})")
    return problems


def pages_of(root: Path) -> list[str]:
    return sorted(
        str(p.relative_to(root).as_posix())
        for p in root.rglob("*.html")
        if not SKIP_DIRS & set(p.relative_to(root).parts)
    )


def _console_problems(events: list[dict[str, Any]], session: str) -> list[str]:
    problems = []
    for event in (e for e in events if e.get("sessionId") == session):
        method, params = event["method"], event["params"]
        if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            problems.append(f"console {params['type']}: {text[:200]}")
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text", "")
            problems.append(f"uncaught exception: {text[:200]}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            if urlsplit(entry.get("url", "")).path == "/favicon.ico":
                continue
            problems.append(f"console error ({entry.get('source')}): {entry['text'][:200]} {entry.get('url', '')}")
        elif method == "Network.responseReceived" and params["response"]["status"] >= 400:
            if urlsplit(params["response"]["url"]).path != "/favicon.ico":  # asked for by the browser, not the page
                problems.append(f"HTTP {params['response']['status']} for {params['response']['url']}")
        elif method == "Network.webSocketCreated" and urlsplit(params["url"]).hostname != "127.0.0.1":
            problems.append(f"websocket to another host: {params['url']}")
    return problems


def check_page(
    browser: Chromium, root: Path, base: str, page: str, screenshots: Path | None, cache: dict[Path, _Anchors]
) -> list[str]:
    """Open one page and return what is wrong with it (an empty list when nothing is)."""
    refresh = _parse(root / page, cache).refresh
    if refresh is not None:  # a redirect page: only its target must exist
        return link_problems(root, base, [urljoin(base + page, refresh)], cache)
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    browser.events.clear()
    browser.blocked.clear()
    try:
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.send(f"{domain}.enable", session=session)
        browser.send("Fetch.enable", {"patterns": [{"urlPattern": "*"}]}, session)
        browser.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False},
            session,
        )
        browser.send("Page.navigate", {"url": base + page}, session)
        browser.wait_for("Page.loadEventFired", session)
        found = browser.send(
            "Runtime.evaluate", {"expression": _INSPECT, "awaitPromise": True, "returnByValue": True}, session
        )
        if "exceptionDetails" in found:
            return [f"the page inspection failed: {found['exceptionDetails'].get('text')}"]
        report = found["result"]["value"]
        size = browser.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
        if screenshots is not None and size["height"] >= 1:
            clip = {
                "x": 0,
                "y": 0,
                "width": min(size["width"], 1280),
                "height": min(size["height"], MAX_SCREENSHOT_HEIGHT),
                "scale": SCREENSHOT_SCALE,
            }
            shot = browser.send(
                "Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True}, session
            )
            out = screenshots / (page.removesuffix(".html").replace("/", "__") + ".png")
            out.write_bytes(base64.b64decode(shot["data"]))
        problems = [f"maths not typeset: {t!r}" for t in report["untypeset"]]
        problems += [f"MathJax error: {t}" for t in report["texErrors"]]
        problems += [f"raw TeX left in the text: {t!r}" for t in report["raw"]]
        problems += [f"image did not load: {src}" for src in report["brokenImages"]]
        problems += link_problems(root, base, report["links"], cache)
        problems += _console_problems(browser.events, session)
        problems += [f"request to another host (blocked): {url}" for url in browser.blocked]
        return problems
    finally:
        browser.send("Target.closeTarget", {"targetId": target})


def check_site(root: Path, pages: list[str] | None = None, screenshots: Path | None = None) -> dict[str, list[str]]:
    """Serve ``root`` on 127.0.0.1, open each page (all HTML pages by default) in Chromium, and return the
    problems found, by page (pages without problems are left out)."""
    if not Path(CHROMIUM).is_file():
        unavailable(
            f"no Chromium at {CHROMIUM}: install Debian's browser with `apt-get install -y chromium` "
            "(or set NOETHER_BOOK_CHROMIUM)"
        )
    if screenshots is not None:
        screenshots.mkdir(parents=True, exist_ok=True)
    cache: dict[Path, _Anchors] = {}
    problems: dict[str, list[str]] = {}
    with serve(root) as base:
        browser = Chromium()
        try:
            for page in pages if pages is not None else pages_of(root):
                found = check_page(browser, root, base, page, screenshots, cache)
                if found:
                    problems[page] = found
        finally:
            browser.close()
    return problems


def _format(problems: dict[str, list[str]], most: int = 12) -> str:
    def listing(found: list[str]) -> str:
        more = f"\n    ... and {len(found) - most} more" if len(found) > most else ""
        return "\n".join(f"    {p}" for p in found[:most]) + more

    return "\n".join(f"{page}:\n{listing(found)}" for page, found in problems.items())


# --------------------------------------------------------------------------- the checker on synthetic sites
def _mathjax_page(body: str) -> str:
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>t</title>"
        "<script>window.MathJax = {options: {processHtmlClass: 'math|output_area', "
        "ignoreHtmlClass: 'tex2jax_ignore|mathjax_ignore|document'}};</script>"
        "<script defer src='mathjax/tex-chtml.js'></script>"
        f"</head><body class='document'>{body}</body></html>"
    )


def _plain_page(body: str) -> str:
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>t</title></head><body>{body}</body></html>"


@pytest.fixture(scope="module")
def synthetic_site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[str]]]:
    """A tiny site with one good page and one page per kind of fault, checked once."""
    from PIL import Image

    root = tmp_path_factory.mktemp("site")
    mathjax = Path(distribution("sphinx-mathjax-offline").locate_file("sphinx-mathjax-offline/static/mathjax"))
    (root / "mathjax").symlink_to(mathjax, target_is_directory=True)
    Image.new("RGB", (4, 3), "white").save(root / "dot.png")
    pages = {
        "good.html": _mathjax_page(
            "<h1 id='top'>Good</h1><p>Inline <span class='math'>\\(x^2\\)</span> and</p>"
            "<div class='math'>\\[\\int_0^1 x\\,dx\\]</div><img src='dot.png' alt=''>"
            "<pre>code may show \\(raw\\) TeX</pre><a href='good.html#top'>self</a> <a href='sub/'>dir</a>"
            "<a href='https://example.org/elsewhere'>an external link is not a request</a>"
        ),
        "sub/index.html": _plain_page("<p>a folder's index</p>"),
        "raw_math.html": _plain_page("<p>Inline <span class='math'>\\(x\\)</span> without MathJax.</p>"),
        "tex_error.html": _mathjax_page(
            "<p><span class='math'>\\(\\frac{1}\\)</span> and <span class='math'>\\(\\undefinedmacro x\\)</span></p>"
        ),
        "broken_image.html": _plain_page("<p><img src='missing.png' alt='gone'></p>"),
        "broken_links.html": _plain_page("<a href='good.html#nowhere'>a</a> <a href='absent.html'>b</a>"),
        "console_error.html": _plain_page("<script>console.error('boom')</script><p>x</p>"),
        "exception.html": _plain_page("<script>undefined_function()</script><p>x</p>"),
        "external.html": _plain_page(
            "<img src='https://example.org/pixel.png' alt=''>"
            "<script>fetch('http://10.9.8.7/track').catch(() => {});</script>"
        ),
        "redirect.html": "<html><head><meta http-equiv='Refresh' content='0; url=absent/index.html' /></head></html>",
    }
    for name, html in pages.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(html, encoding="utf-8")
    return root, check_site(root, sorted(pages), screenshots=root.parent / f"{root.name}-shots")


def test_checker_passes_a_good_page(synthetic_site):
    root, problems = synthetic_site
    assert "good.html" not in problems, _format(problems)
    assert "sub/index.html" not in problems
    assert (root.parent / f"{root.name}-shots" / "good.png").stat().st_size > 0


@pytest.mark.parametrize(
    "page, expected",
    [
        ("raw_math.html", ["maths not typeset", "raw TeX left"]),
        (
            "tex_error.html",
            [
                "MathJax error: Missing argument for \\frac",
                "MathJax error: undefined control sequence \\undefinedmacro",
            ],
        ),
        ("broken_image.html", ["image did not load: missing.png", "HTTP 404"]),
        ("broken_links.html", ["no anchor #nowhere", "absent.html (no such file)"]),
        ("console_error.html", ["console error: boom"]),
        ("exception.html", ["uncaught exception"]),
        (
            "external.html",
            [
                "request to another host (blocked): https://example.org/pixel.png",
                "request to another host (blocked): http://10.9.8.7/track",
            ],
        ),
        ("redirect.html", ["absent/index.html (no such file)"]),
    ],
)
def test_checker_catches(synthetic_site, page, expected):
    _, problems = synthetic_site
    found = "\n".join(problems.get(page, []))
    for text in expected:
        assert text in found, f"{page}: expected a problem containing {text!r}, found:\n{found}"


# ------------------------------------------------------------------------------------------ the real book
@pytest.fixture(scope="module")
def book_html() -> Path:
    return built_html()


def test_every_page_reads_well_in_chromium(book_html):
    """Every page of the built book passes the browser checks; screenshots go to ``_build/screenshots``."""
    screenshots = Path(os.environ.get("NOETHER_BOOK_SCREENSHOTS") or book_html.parent / "screenshots")
    pages = pages_of(book_html)
    start = time.monotonic()
    problems = check_site(book_html, pages, screenshots=screenshots)
    print(f"checked {len(pages)} pages in {time.monotonic() - start:.1f} s; screenshots in {screenshots}")
    assert not problems, "pages with problems in Chromium:\n" + _format(problems)


def test_a_broken_copy_of_the_book_fails(book_html, tmp_path):
    """Break a copy of a real page (drop MathJax, delete one of its images): the checker must notice."""
    page = next(
        (
            p
            for p in pages_of(book_html)
            if "_images/" in (book_html / p).read_text(encoding="utf-8")
            and "tex-chtml.js" in (book_html / p).read_text(encoding="utf-8")
        ),
        None,
    )
    if page is None:
        pytest.skip("the build has no page with both maths and an image")
    copy = tmp_path / "html"
    shutil.copytree(book_html, copy, ignore=shutil.ignore_patterns("_static"))
    (copy / "_static").symlink_to(book_html / "_static", target_is_directory=True)
    text = (copy / page).read_text(encoding="utf-8")
    text = re.sub(r"<script[^>]*tex-chtml\.js[^>]*></script>", "", text)
    image = re.search(r'src="((?:\.\./)*_images/[^"]+)"', text).group(1)
    (copy / page).write_text(text, encoding="utf-8")
    (copy / page).parent.joinpath(image).resolve().unlink()
    problems = check_site(copy, [page])
    found = "\n".join(problems.get(page, []))
    assert "maths not typeset" in found and "raw TeX left" in found, found
    assert f"image did not load: {image}" in found, found


def _figures(html: str) -> list[tuple[str, str]]:
    """(label, inner HTML) of every ``<figure id="fig-...">``."""
    return re.findall(r'<figure[^>]*\bid="(fig-[^"]+)"[^>]*>(.*?)</figure>', html, flags=re.S)


def test_every_figure_links_its_exports_and_citation(book_html):
    meta = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    missing: dict[str, list[str]] = {}
    count = 0
    for page in pages_of(book_html):
        for label, inner in _figures((book_html / page).read_text(encoding="utf-8")):
            count += 1
            lacks = [ext for ext in ("pdf", "svg", "png", "csv") if f'_static/figures/{label}.{ext}"' not in inner]
            lacks += [] if (book_html / "_static" / "figures" / f"{label}.csv").is_file() else ["served csv"]
            if not re.search(r'class="figure-citation".*?version ' + re.escape(str(meta["version"])), inner, re.S):
                lacks.append("citation with the version")
            if lacks:
                missing[f"{page}#{label}"] = lacks
    assert count, "the built book has no figures"
    assert not missing, f"figures without their exports or citation: {missing}"


def test_notebook_pages_have_download_binder_and_colab_buttons(book_html):
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repo = urlsplit(config["repository"]["url"]).path.strip("/")
    branch = config["repository"]["branch"]
    notebooks = [
        p
        for p in pages_of(book_html)
        if (ROOT / p).with_suffix(".ipynb").is_file() and (book_html / "_sources" / p).with_suffix(".ipynb").is_file()
    ]
    assert notebooks, "no notebook pages in the build"
    missing = {}
    for page in notebooks:
        html = (book_html / page).read_text(encoding="utf-8")
        source = Path(page).with_suffix(".ipynb").as_posix()
        wanted = {
            "download": f'_sources/{source}"',
            "binder": f"https://mybinder.org/v2/gh/{repo}/{branch}?urlpath=lab/tree/{source}",
            "colab": f"https://colab.research.google.com/github/{repo}/blob/{branch}/{source}",
        }
        lacks = [name for name, text in wanted.items() if text not in html]
        if lacks:
            missing[page] = lacks
    assert not missing, f"notebook pages without launch or download buttons: {missing}"
