"""Only dlvm's own output is ever removed: --overwrite replaces a folder dlvm wrote (or an empty
one), never the user's files, the working directory or a folder holding the input data; two
processes on one --out never both write it."""
import multiprocessing
import os

import numpy as np
import pytest

from dlvm.experiments.cli import main
from dlvm.experiments.runs.folders import RUN_MARKER, output_lock, staged_run

TABLE = "a,b,c,d\n" + "\n".join(",".join(f"{v:.4f}" for v in row)
                                 for row in np.random.default_rng(1).normal(size=(40, 4))) + "\n"


def fit(data, out, *extra):
    return main(["fit", "ppca", "--data", str(data), "--latent-dim", "1", "--optimizer", "lbfgs",
                 "--epochs", "3", "--iwae-samples", "2", "--out", str(out), "--quiet", *extra])


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_overwrite_refuses_a_folder_dlvm_did_not_write(tmp_path, capsys):
    mydata = tmp_path / "mydata"
    mydata.mkdir()
    (mydata / "data.csv").write_text(TABLE)
    (mydata / "notes.txt").write_text("my notes")
    before = snapshot(mydata)
    assert fit(mydata / "data.csv", mydata, "--overwrite") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds the input" in err
    assert snapshot(mydata) == before
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("keep")
    data = tmp_path / "data.csv"
    data.write_text(TABLE)
    assert fit(data, other, "--overwrite") == 2
    assert "was not written by dlvm" in capsys.readouterr().err
    assert (other / "keep.txt").read_text() == "keep"


def test_overwrite_refuses_the_working_directory_and_its_parents(tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    (work / "data.csv").write_text(TABLE)
    (tmp_path / "sibling.txt").write_text("sibling")
    monkeypatch.chdir(work)
    for out in ("..", ".", str(tmp_path)):
        assert fit("data.csv", out, "--overwrite") == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert (tmp_path / "sibling.txt").read_text() == "sibling"
    assert (work / "data.csv").read_text() == TABLE


def test_overwrite_replaces_a_run_and_an_empty_folder(tmp_path):
    data = tmp_path / "data.csv"
    data.write_text(TABLE)
    out = tmp_path / "run"
    out.mkdir()  # empty: may be written
    assert fit(data, out) == 0
    assert (out / RUN_MARKER).is_file() and (out / "config.json").is_file()
    assert fit(data, out) == 2  # a run, without --overwrite
    assert fit(data, out, "--overwrite", "--seed", "3") == 0
    assert (out / "metrics.json").is_file()
    assert not any(p.name.startswith((".run.old", ".run.lock", "run.partial")) for p in tmp_path.iterdir())


def test_output_file_is_never_replaced_by_a_folder(tmp_path, capsys):
    data = tmp_path / "data.csv"
    data.write_text(TABLE)
    target = tmp_path / "results.txt"
    target.write_text("results")
    assert fit(data, target, "--overwrite") == 2
    assert "is not a folder" in capsys.readouterr().err
    assert target.read_text() == "results"


def _hold(out, ready, release):
    with staged_run(out):
        ready.set()
        release.wait(30)


def test_a_second_process_on_the_same_output_fails_with_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    context = multiprocessing.get_context("fork")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold, args=(out, ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        data = tmp_path / "data.csv"
        data.write_text(TABLE)
        assert fit(data, out) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "another dlvm process is writing" in err
    finally:
        release.set()
        holder.join(30)
    assert holder.exitcode == 0
    assert (out / RUN_MARKER).is_file()  # the first writer's folder is complete


def test_lock_is_exclusive_within_a_process(tmp_path):
    out = tmp_path / "x"
    with output_lock(out):
        with pytest.raises(ValueError, match="another dlvm process"):
            with output_lock(out):
                pass
    assert not os.path.exists(tmp_path / ".x.lock")
    with output_lock(out):  # released: can be taken again
        pass
