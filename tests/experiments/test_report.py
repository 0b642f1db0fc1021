"""The report page: every experiment's section, embedded figures that load in a real browser."""
import re
import shutil
import subprocess

import pytest

from dlvm.experiments.reporting.report import OPEN_TABLE_ROWS, _section, run_experiments

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
CHECK = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const ok = images.filter(img => img.complete && img.naturalWidth > 0).length;
  document.title = "loaded " + ok + " of " + images.length;
});
</script>"""


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "demo"
    return run_experiments(["regimes", "estimators"], out, quick=True, progress=False)


def test_report_has_a_section_per_experiment_with_captions(report):
    page = report.read_text()
    for name in ("regimes", "estimators"):
        assert f'<section id="{name}">' in page
    assert page.count("<figure>") >= 4 and "<table" in page
    captions = re.findall(r"</h2>\s*<p>([^<]+)</p>", page)
    assert len(captions) == 2 and all(c.count(".") >= 2 for c in captions)  # two sentences each
    assert "src=\"data:image/png;base64," in page and "src=\"figures/" not in page  # works offline


@pytest.mark.skipif(BROWSER is None, reason="no chromium here (Debian package: chromium)")
def test_every_figure_loads_in_headless_chromium(report, tmp_path):
    page = tmp_path / "checked.html"
    page.write_text(report.read_text().replace("</body>", CHECK + "</body>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([BROWSER, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    title = re.search(r"<title>(.*?)</title>", dom.stdout)
    assert title, dom.stderr[-500:]
    loaded, total = map(int, re.match(r"loaded (\d+) of (\d+)", title.group(1)).groups())
    assert total >= 4 and loaded == total
    shot = subprocess.run([BROWSER, *flags, f"--screenshot={tmp_path / 'report.png'}", "--window-size=1200,2000",
                           page.as_uri()], capture_output=True, timeout=120)
    assert (tmp_path / "report.png").stat().st_size > 10_000, shot.stderr[-500:]


def test_long_tables_are_collapsed_short_ones_open(tmp_path):
    (tmp_path / "short.csv").write_text("a,b\n" + "1,2\n" * 3)
    (tmp_path / "long.csv").write_text("epoch,elbo\n" + "".join(f"{i},{-i}\n" for i in range(40)))
    page = _section("x", tmp_path, {"caption": "c.", "files": ["short.csv", "long.csv"]})
    assert "<h3>short.csv</h3>" in page and "<h3>long.csv" not in page
    assert "<details><summary>long.csv: 40 rows (first 30 of 40 rows)</summary>" in page
    assert OPEN_TABLE_ROWS < 40
