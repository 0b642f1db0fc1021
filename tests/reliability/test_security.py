"""No code path unpickles untrusted files or evaluates strings."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [p for folder in ("models", "guides", "inference", "experiments", "benchmarks")
           for p in (ROOT / folder).rglob("*.py")]


def test_sources_found():
    assert len(SOURCES) > 10


def test_every_torch_load_is_weights_only():
    for path in SOURCES:
        for call in re.findall(r"torch\.load\([^)]*\)", path.read_text()):
            assert "weights_only=True" in call, f"{path}: {call}"


def test_no_eval_exec_or_pickle_loads():
    pattern = re.compile(r"(?<![\w.])(eval|exec)\(|pickle\.loads?\(|allow_pickle=True|yaml\.load\(")
    for path in SOURCES:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            assert not pattern.search(line), f"{path}:{number}: {line.strip()}"
