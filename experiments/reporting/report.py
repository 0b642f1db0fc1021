"""Running experiments into one folder and writing the offline HTML report."""
from __future__ import annotations

import base64
import html
import json
import time
from pathlib import Path

import pandas as pd

from .. import EXPERIMENTS, get_experiment
from ..runs.folders import staged_run, write_json, write_text_atomic

MAX_TABLE_ROWS = 30
#: tables with more rows than this are shown collapsed (opened by a click)
OPEN_TABLE_ROWS = 12


def _figure_html(path: Path, rel: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(rel)}">'
            f"<figcaption>{html.escape(rel)}</figcaption></figure>")


def _table_html(path: Path, rel: str) -> str:
    """A CSV as an HTML table; one longer than :data:`OPEN_TABLE_ROWS` rows (a history, say) is
    collapsed behind its title, and only its first :data:`MAX_TABLE_ROWS` rows are shown."""
    frame = pd.read_csv(path)
    note = f" (first {MAX_TABLE_ROWS} of {len(frame)} rows)" if len(frame) > MAX_TABLE_ROWS else ""
    table = frame.head(MAX_TABLE_ROWS).to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0)
    if len(frame) > OPEN_TABLE_ROWS:
        return f"<details><summary>{html.escape(rel)}: {len(frame)} rows{note}</summary>{table}</details>"
    return f"<h3>{html.escape(rel)}</h3>{table}"


def _section(name: str, folder: Path, summary: dict) -> str:
    parts = [f'<section id="{html.escape(name)}"><h2>{html.escape(name)}</h2>',
             f"<p>{html.escape(summary.get('caption', ''))}</p>"]
    for rel in summary.get("files", []):
        path = folder / rel
        if path.suffix == ".png":
            parts.append(_figure_html(path, rel))
        elif path.suffix == ".csv":
            parts.append(_table_html(path, rel))
    numbers = {k: v for k, v in summary.items() if k not in ("files", "caption")}
    parts.append(f"<details><summary>summary.json</summary><pre>{html.escape(json.dumps(numbers, indent=2))}</pre></details>")
    parts.append("</section>")
    return "\n".join(parts)


def write_report(out: Path, sections: dict[str, dict], quick: bool) -> Path:
    """One self-contained page (images embedded) with a section per experiment."""
    mode = "quick settings" if quick else "full protocol"
    body = "\n".join(_section(name, out / name, summary) for name, summary in sections.items())
    toc = " · ".join(f'<a href="#{html.escape(n)}">{html.escape(n)}</a>' for n in sections)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dlvm report</title>
<style>
body {{ font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }}
img {{ max-width: 100%; }} figure {{ margin: 1em 0; }} figcaption {{ color: #666; font-size: 0.9em; }}
table {{ border-collapse: collapse; font-size: 0.85em; }} td, th {{ padding: 2px 8px; border-bottom: 1px solid #ddd; }}
section {{ border-top: 2px solid #ccc; margin-top: 2em; }}
</style></head><body>
<h1>dlvm report</h1><p>{len(sections)} experiment(s), {mode}, written {time.strftime('%Y-%m-%d %H:%M')}.</p>
<nav>{toc}</nav>
{body}
</body></html>
"""
    path = out / "report.html"
    write_text_atomic(path, page)
    return path


def run_experiments(names, out: Path, *, quick: bool, seed: int = 0, device: str = "cpu",
                    progress: bool = True, overwrite: bool = False) -> Path:
    """Run each named experiment into ``out/NAME`` and write ``out/report.html``."""
    out = Path(out)
    with staged_run(out, overwrite=overwrite) as stage:
        sections = {}
        for name in names:
            if progress:
                print(f"[{name}] {EXPERIMENTS[name][1]}", flush=True)
            folder = stage / name
            (folder / "figures").mkdir(parents=True, exist_ok=True)
            began = time.perf_counter()
            summary = get_experiment(name).run(folder, quick=quick, seed=seed, device=device, progress=progress)
            summary["seconds"] = round(time.perf_counter() - began, 2)
            write_json(folder / "summary.json", summary)
            sections[name] = summary
        write_report(stage, sections, quick)
    return out / "report.html"
