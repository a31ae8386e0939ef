"""report.html as a browser shows it: a small run's report rendered by headless Chromium
(Debian's ``chromium``; skipped, with the reason, where it is not installed). Every image the
browser parsed must decode as a whole PNG, and the first screen must not be blank: it shows
the scorecard's coloured cells."""

from __future__ import annotations

import base64
import io
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from _helpers_report import write_run
from PIL import Image
from test_answer import _equal_load_records
from test_report import full_records

from bench.report import document as report
from bench.report.front import GOOD

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium here (apt-get install "
                                "chromium) to render report.html")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run([str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120, check=False)


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.cells = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.sources.append(dict(attrs).get("src") or "")
        if tag == "td" and "background" in (dict(attrs).get("style") or ""):
            self.cells += 1


@pytest.fixture(scope="module")
def html_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    records = full_records() + _equal_load_records(2)
    folder = write_run(tmp_path_factory.mktemp("run"), records, {"name": "render"})
    return report.build_report(folder).paths["html"]


def test_every_image_chromium_loads_is_a_whole_png(html_path: Path, tmp_path: Path) -> None:
    done = chromium(tmp_path, "--dump-dom", html_path.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    parsed = _Images()
    parsed.feed(done.stdout)
    assert len(parsed.sources) >= 8  # the heat map and the charts
    for source in parsed.sources:
        prefix = "data:image/png;base64,"
        assert source.startswith(prefix), source[:60]
        image = Image.open(io.BytesIO(base64.b64decode(source[len(prefix):])))
        assert image.format == "PNG"
        image.load()  # the whole image decodes, not only its header
        assert image.width >= 400 and image.height >= 200
    assert parsed.cells >= 10  # the scorecard's coloured cells reached the browser


def test_the_first_screen_is_the_scorecard(html_path: Path, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    done = chromium(tmp_path, "--window-size=1280,900", f"--screenshot={shot}",
                    html_path.as_uri())
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    image = Image.open(shot).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 50, "the page looks blank"
    best = tuple(int(GOOD[i:i + 2], 16) for i in (1, 3, 5))
    assert any(colour == best for _, colour in colours), "no 'best' cell on the first screen"
