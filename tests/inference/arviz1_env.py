"""A cached Python 3.12 virtual environment with arviz 1.x (numpy, matplotlib; no torch) in which
the arviz adapter runs as a script."""
import glob
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from dlvm.inference import arviz_adapter

PACKAGES = ("arviz>=1", "numpy", "matplotlib")


def _python312():
    """A working python3.12 interpreter (on PATH or under pyenv), or None."""
    candidates = [shutil.which("python3.12")] + sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12")))
    for path in filter(None, candidates):
        if subprocess.run([path, "--version"], capture_output=True).returncode == 0:
            return path
    return None


def _has(python: Path, module: str) -> bool:
    return subprocess.run([str(python), "-c", f"import {module}"], capture_output=True).returncode == 0


def arviz1_python() -> Path:
    """The venv's interpreter, created (or completed) on first use; skips the test where it cannot be."""
    python = _python312()
    if python is None:
        pytest.skip("python3.12 is not installed here: the arviz 1.x check needs it")
    venv = Path(os.environ.get("DLVM_TEST_CACHE", os.path.expanduser("~/.cache/dlvm-test"))) / "arviz1"
    bin_python = venv / "bin" / "python"
    if not bin_python.exists():
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
    if not (_has(bin_python, "arviz") and _has(bin_python, "matplotlib")):
        install = subprocess.run([str(bin_python), "-m", "pip", "install", "-q", *PACKAGES],
                                 capture_output=True, text=True)
        if install.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            pytest.skip(f"could not install {' '.join(PACKAGES)} for Python 3.12: {install.stderr.strip()[-200:]}")
    return bin_python


def run_adapter(*files) -> str:
    """Run the adapter as a script under arviz 1.x (on saved groups ``files``, else its self-check);
    its standard output."""
    out = subprocess.run([str(arviz1_python()), str(Path(arviz_adapter.__file__)), *map(str, files)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout
