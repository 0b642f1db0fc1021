"""Run every benchmark script in this folder and collect their tables in RESULTS.md.

Each script compares dlvm with a reference in one process and prints a markdown table of
ratios on stdout. Usage: ``python benchmarks/run_all.py [name ...]``.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def machine() -> str:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (f"{platform.platform()}, Python {platform.python_version()}, torch {torch.__version__}, "
            f"{os.cpu_count()} CPU cores, GPU: {gpu}")


def main(names: list[str]) -> int:
    scripts = sorted(p for p in HERE.glob("*.py") if p.name != Path(__file__).name)
    if names:
        scripts = [p for p in scripts if p.stem in names]
    sections = [f"# Benchmark results\n\nMachine: {machine()}  \nWritten {time.strftime('%Y-%m-%d %H:%M')}.\n"]
    failed = 0
    for script in scripts:
        print(f"== {script.name}", flush=True)
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
        print(done.stdout, flush=True)
        if done.returncode != 0:
            failed += 1
            print(done.stderr[-2000:], file=sys.stderr)
            sections.append(f"## {script.stem}\n\nfailed (exit {done.returncode})\n")
        else:
            sections.append(f"## {script.stem}\n\n{done.stdout.strip()}\n")
    (HERE / "RESULTS.md").write_text("\n".join(sections))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
