"""Property-based tests of the command line: generated tables, arrays and flag values.

Whatever the input, every command either succeeds with finite output or exits 2 with one line
``dlvm: error: ...`` (notes before it allowed) — never 70, never a traceback — and nothing outside
its ``--out`` is created, changed or removed.
"""
import contextlib
import io
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dlvm.experiments.cli import main

#: DLVM_FUZZ_EXAMPLES=200 searches longer (and at random) than the default run's fixed examples
EXAMPLES = int(os.environ.get("DLVM_FUZZ_EXAMPLES", "12"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize="DLVM_FUZZ_EXAMPLES" not in os.environ,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

CELLS = st.one_of(
    st.floats(-3, 3, allow_nan=False),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e300, -1e300, 1e-300, 0.0, 2.0 ** 60]),
    st.integers(-5, 5),
    st.sampled_from(["x", "", "1,5", "text with, comma", '"q"']),
)
NAMES = st.sampled_from(["a", "b", "c", "d", "a,b", 'say "hi"', "Unnamed: 0", "date", "ü", " "])
DIALECTS = st.sampled_from([(",", "."), (";", ","), (";", "."), ("\t", "."), ("|", ".")])
NUMBERS = st.sampled_from(["0", "-1", "1", "2", "3", "nan", "inf", "-inf", "1e308", "1e-308", "abc", "",
                           "99999999999999999999", "0.5"])
#: a flag value that is mostly a good one, so that the commands also get to succeed
MOSTLY_GOOD = st.one_of(st.just("2"), NUMBERS)
MODELS = st.sampled_from(["fa", "ppca", "gmm", "hmm", "vae"])


@st.composite
def tables(draw):
    """CSV text: 0-8 rows of 1-4 columns of odd cells, in an odd dialect, maybe with an index."""
    columns = draw(st.lists(NAMES, min_size=1, max_size=4))
    rows = draw(st.integers(0, 8))
    data = [[draw(CELLS) for _ in columns] for _ in range(rows)]
    frame = pd.DataFrame(data, columns=columns)
    sep, decimal = draw(DIALECTS)
    return frame.to_csv(sep=sep, decimal=decimal, index=draw(st.booleans()))


@st.composite
def like_the_runs(draw):
    """CSV text close to what the fitted runs saw: columns a-d in any order (now and then one
    missing or one more), 0-12 rows of numbers with an odd cell now and then."""
    columns = list(draw(st.permutations(["a", "b", "c", "d"])))
    change = draw(st.sampled_from(["none"] * 4 + ["drop", "extra"]))
    columns = columns[1:] if change == "drop" else columns + ["e"] if change == "extra" else columns
    rows = draw(st.integers(0, 12))
    def cell():
        return draw(CELLS) if draw(st.integers(0, 19)) == 0 else draw(st.floats(-3, 3, allow_nan=False))

    frame = pd.DataFrame([[cell() for _ in columns] for _ in range(rows)], columns=columns)
    sep, decimal = draw(DIALECTS)
    return frame.to_csv(sep=sep, decimal=decimal, index=False)


@st.composite
def windows(draw):
    """Windows (N, T, D) of 8-14 sequences, mostly finite."""
    shape = (draw(st.integers(8, 14)), draw(st.integers(1, 4)), draw(st.integers(1, 3)) + 1)
    values = np.random.default_rng(draw(st.integers(0, 2 ** 16))).normal(size=shape)
    if draw(st.integers(0, 5)) == 0:
        values.flat[0] = draw(st.sampled_from([np.nan, np.inf, 1e300]))
    return values


@st.composite
def arrays(draw):
    """An array of odd shape and type, with odd values."""
    shape = draw(st.sampled_from([(0, 3), (5,), (6, 3), (6, 1), (4, 3, 2), (6, 2, 2, 1)]))
    kind = draw(st.sampled_from(["float", "int", "complex", "bool", "big"]))
    values = np.asarray(draw(st.lists(st.floats(-3, 3, allow_nan=False), min_size=int(np.prod(shape)),
                                      max_size=int(np.prod(shape)))), dtype=float).reshape(shape)
    if kind == "int":
        return values.round().astype(np.int64)
    if kind == "complex":
        return values + 1j
    if kind == "bool":
        return values > 0
    if kind == "big" and values.size:
        values.flat[0] = draw(st.sampled_from([np.nan, np.inf, 1e300, 1e-300]))
    return values


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): (p.read_bytes() if p.is_file() else None) for p in folder.rglob("*")}


def run_cli(argv, folder: Path, out: Path) -> tuple[int, str]:
    """Run the command in ``folder``; check the contract; return (status, stdout)."""
    before = snapshot(folder)
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            code = main([str(a) for a in argv])
        except SystemExit as stop:  # argparse
            code = stop.code
    lines = stderr.getvalue().strip().splitlines()
    event(f"{argv[0]} exit {code}")  # shown by --hypothesis-show-statistics
    assert code in (0, 2), (argv, code, lines)
    assert not any("Traceback" in line for line in lines), lines
    if code == 2:
        errors = [line for line in lines if line.startswith("dlvm: error: ")]
        assert len(errors) == 1 and all(l.startswith(("dlvm: error: ", "dlvm: note: ")) for l in lines), lines
    after = snapshot(folder)
    outside = {p for p in set(before) | set(after)
               if before.get(p, "absent") != after.get(p, "absent") and not _under(folder / p, out)}
    assert not outside, (argv, sorted(map(str, outside)))
    return code, stdout.getvalue()


def _under(path: Path, out: Path) -> bool:
    """Inside ``out``, or in its staging folder (kept with the last checkpoint for --resume)."""
    return any(path == folder or folder in path.parents for folder in (out, out.with_name(out.name + ".partial")))


def finite_json(text: str) -> None:
    values = json.loads(text)
    numbers = [v for v in values.values() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    assert all(np.isfinite(numbers)), values


@FUZZ
@given(text=tables(), model=MODELS, missing=st.booleans())
def test_fit_on_generated_tables(text, model, missing):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "data.csv").write_text(text)
        out = folder / "run"
        argv = ["fit", model, "--data", folder / "data.csv", "--out", out, "--epochs", 2, "--iwae-samples", 2,
                "--quiet", *(["--missing", "mask"] if missing else [])]
        code, _ = run_cli(argv, folder, out)
        if code == 0:
            finite_json((out / "metrics.json").read_text())


@FUZZ
@given(array=arrays(), model=MODELS, suffix=st.sampled_from([".npy", ".npz"]))
def test_fit_on_generated_arrays(array, model, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = folder / f"data{suffix}"
        np.save(data, array) if suffix == ".npy" else np.savez(data, data=array)
        out = folder / "run"
        code, _ = run_cli(["fit", model, "--data", data, "--out", out, "--epochs", 2, "--iwae-samples", 2, "--quiet"],
                          folder, out)
        if code == 0:
            finite_json((out / "metrics.json").read_text())


FLAGS = ["--lr", "--clip-norm", "--restarts", "--iwae-samples", "--epochs", "--latent-dim", "--seed",
         "--batch-size", "--lr-decay", "--num-particles", "--early-stopping", "--checkpoint-every", "--alpha"]
GOOD = pd.DataFrame(np.random.default_rng(0).normal(size=(30, 4)), columns=list("abcd")).to_csv(index=False)


@FUZZ
@given(flags=st.dictionaries(st.sampled_from(FLAGS), NUMBERS, min_size=1, max_size=3),
       model=st.sampled_from(["fa", "gmm"]))
def test_fit_with_generated_flag_values(flags, model):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "data.csv").write_text(GOOD)
        out = folder / "run"
        extra = [a for flag, value in flags.items() for a in (flag, value)]
        if "--epochs" not in flags:
            extra += ["--epochs", "2"]
        code, _ = run_cli(["fit", model, "--data", folder / "data.csv", "--out", out, "--quiet", *extra],
                          folder, out)
        if code == 0:
            finite_json((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def fitted_runs(tmp_path_factory):
    """An FA and a GMM run on a table with columns a, b, c, d."""
    folder = tmp_path_factory.mktemp("runs")
    (folder / "good.csv").write_text(GOOD)
    runs = {}
    for model in ("fa", "gmm"):
        runs[model] = folder / model
        assert main(["fit", model, "--data", str(folder / "good.csv"), "--out", str(runs[model]), "--epochs", "3",
                     "--iwae-samples", "2", "--quiet"]) == 0
    return runs


@FUZZ
@given(text=st.one_of(tables(), like_the_runs(), like_the_runs()),
       command=st.sampled_from(["evaluate", "sample", "regimes"]), n=MOSTLY_GOOD)
def test_run_commands_on_generated_data(fitted_runs, text, command, n):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "other.csv").write_text(text)
        out = folder / ("out.csv" if command != "evaluate" else "unused")
        run = fitted_runs["gmm" if command == "regimes" else "fa"]
        argv = {"evaluate": ["evaluate", run, "--data", folder / "other.csv", "--iwae-samples", n],
                "sample": ["sample", run, "-n", n, "--out", out],
                "regimes": ["regimes", run, "--data", folder / "other.csv", "--out", out]}[command]
        code, stdout = run_cli(argv, folder, out)
        if code == 0 and command == "evaluate":
            finite_json(stdout)
        if code == 0 and command == "sample":
            assert np.isfinite(pd.read_csv(out).to_numpy()).all()


@FUZZ
@given(real=st.one_of(arrays(), windows()), synthetic=st.one_of(arrays(), windows(), windows()), repeats=MOSTLY_GOOD)
def test_score_on_generated_arrays(real, synthetic, repeats):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        np.savez(folder / "real.npz", data=real)
        np.savez(folder / "synthetic.npz", data=synthetic)
        code, stdout = run_cli(["score", "--real", folder / "real.npz", "--synthetic", folder / "synthetic.npz",
                                "--repeats", repeats, "--discriminative-steps", 2, "--predictive-steps", 2],
                               folder, folder / "none")
        if code == 0:
            finite_json(stdout)


@FUZZ
@given(text=st.one_of(tables(), like_the_runs(), like_the_runs()), command=st.sampled_from(["compare", "diagnose"]),
       value=MOSTLY_GOOD)
def test_compare_and_diagnose_on_generated_data(fitted_runs, text, command, value):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "data.csv").write_text(text)
        out = folder / "out"
        argv = {"compare": ["compare", "fa", "--data", folder / "data.csv", "--out", out, "--steps", 2,
                            "--draws", value, "--elbos", "trace"],
                "diagnose": ["diagnose", fitted_runs["fa"], "--data", folder / "data.csv", "--out", out,
                             "--seed", value]}[command]
        code, stdout = run_cli(argv, folder, out)
        if code == 0 and command == "diagnose":
            summary = json.loads(stdout)
            assert summary["khat_median"] is None or np.isfinite(summary["khat_median"])


DATES = st.one_of(st.dates().map(str), st.sampled_from(["", "x", "2020-13-01", "1", "2020-01-01 10:00"]))


@FUZZ
@given(dates=st.lists(DATES, min_size=0, max_size=12), model=st.sampled_from(["hmm", "vrae", "gmm"]))
def test_time_series_with_generated_dates(dates, model):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        values = np.random.default_rng(len(dates)).normal(size=(len(dates), 2))
        pd.DataFrame({"date": dates, "a": values[:, 0], "b": values[:, 1]}).to_csv(folder / "d.csv", index=False)
        out = folder / "run"
        window = ["--window", "3"] if model == "vrae" else []
        code, _ = run_cli(["fit", model, "--data", folder / "d.csv", "--out", out, "--epochs", 2,
                           "--iwae-samples", 2, "--quiet", *window], folder, out)
        if code != 0 or model == "vrae":
            return
        finite_json((out / "metrics.json").read_text())
        if run_cli(["regimes", out, "--out", folder / "r.csv"], folder, folder / "r.csv")[0] == 0 and model == "hmm":
            written = pd.read_csv(folder / "r.csv", dtype={"date": str})["date"]
            parsed = pd.to_datetime(written, errors="coerce", format="mixed")
            keys = written if parsed.isna().any() else parsed  # dates in date order, else text in text order
            assert keys.is_unique and keys.is_monotonic_increasing, list(written)
