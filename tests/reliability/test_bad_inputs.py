"""The corpus of bad inputs: each gets one line on stderr, exit status 2 and nothing half-written."""
import pickle

import numpy as np
import pytest
import torch

from dlvm.experiments.cli import main

GOOD = "a,b,c,d,e\n" + "\n".join(",".join(f"{v:.4f}" for v in row) for row in
                                   np.random.default_rng(0).normal(size=(60, 5))) + "\n"


def write(folder, name, content):
    path = folder / name
    if isinstance(content, np.ndarray):
        np.save(path, content) if name.endswith(".npy") else np.savez(path, data=content)
    else:
        path.write_text(content)
    return str(path)


def fitted(folder, model="fa"):
    out = folder / f"run-{model}"
    if not out.exists():
        assert main(["fit", model, "--data", write(folder, "good.csv", GOOD), "--latent-dim", "2",
                     "--optimizer", "lbfgs", "--out", str(out), "--quiet"]) == 0
    return str(out)


def broken_checkpoint(folder, how):
    run = fitted(folder)
    path = folder / "run-fa" / "checkpoint.pt"
    if how == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif how == "other model":
        other = fitted(folder, "ppca")
        path.write_bytes((folder / "run-ppca" / "checkpoint.pt").read_bytes())
    else:
        class Exploit:
            def __reduce__(self):
                return (print, ("this ran",))
        path.write_bytes(pickle.dumps({"format": "dlvm-checkpoint", "x": Exploit()}))
    return run


def fit_args(data, *extra, model="fa"):
    return ["fit", model, "--data", data, "--out", "{out}", *extra]


CASES = {
    "NaN without --missing mask": (lambda f: fit_args(write(f, "nan.csv", GOOD + "nan,1,2,3,4\n"), "--latent-dim", "2"), "missing (NaN)"),
    "infinite value": (lambda f: fit_args(write(f, "inf.csv", GOOD + "inf,1,2,3,4\n"), "--latent-dim", "2"), "infinite"),
    "empty file": (lambda f: fit_args(write(f, "empty.csv", "")), "is empty"),
    "header only": (lambda f: fit_args(write(f, "header.csv", "a,b,c\n")), "no data rows"),
    "text column": (lambda f: fit_args(write(f, "text.csv", "a,b,label\n1,2,x\n3,4,y\n")), "is not numeric"),
    "one row": (lambda f: fit_args(write(f, "one.csv", "a,b,c\n1,2,3\n")), "at least 2 are needed"),
    "wrong array rank": (lambda f: fit_args(write(f, "flat.npy", np.ones(10))), "2 or more dimensions"),
    "windows shorter than the model needs": (
        lambda f: fit_args(write(f, "short.npz", np.random.rand(20, 3, 2)), model="timevae"), "need at least 8 steps"),
    "window longer than the series": (lambda f: fit_args(write(f, "good.csv", GOOD), "--window", "500", model="vrae"), "fewer than the window"),
    "Bernoulli data outside [0, 1]": (
        lambda f: fit_args(write(f, "good.csv", GOOD), "--likelihood", "bernoulli", model="vae"), "[0, 1]"),
    "negative latent size": (lambda f: fit_args(write(f, "good.csv", GOOD), "--latent-dim", "-1"), "positive integer"),
    "zero latent size": (lambda f: fit_args(write(f, "good.csv", GOOD), "--latent-dim", "0"), "positive integer"),
    "more components than rows": (lambda f: fit_args(write(f, "good.csv", GOOD), "--components", "500", model="gmm"), "500"),
    "unknown model": (lambda f: fit_args(write(f, "good.csv", GOOD), model="nope"), "unknown model 'nope'"),
    "unknown guide": (lambda f: fit_args(write(f, "good.csv", GOOD), "--guide", "nope"), "guide 'nope'"),
    "unknown ELBO": (lambda f: fit_args(write(f, "good.csv", GOOD), "--elbo", "nope"), "unknown ELBO 'nope'"),
    "unknown device": (lambda f: fit_args(write(f, "good.csv", GOOD), "--device", "tpu"), "device"),
    "missing file": (lambda f: fit_args(str(f / "absent.csv")), "does not exist"),
    "directory instead of a file": (lambda f: fit_args(str(f)), "is a directory"),
    "truncated checkpoint": (lambda f: ["evaluate", broken_checkpoint(f, "truncated")], "not a readable dlvm checkpoint"),
    "checkpoint of another model": (lambda f: ["evaluate", broken_checkpoint(f, "other model")], "written for model 'ppca'"),
    "pickle that would run code": (lambda f: ["evaluate", broken_checkpoint(f, "exploit")], "not a readable dlvm checkpoint"),
    "output folder that holds a run": (lambda f: ["fit", "fa", "--data", write(f, "good.csv", GOOD), "--out", fitted(f)], "already holds a run"),
    "not a run folder": (lambda f: ["evaluate", str(f)], "not a dlvm run folder"),
    "data of another width": (lambda f: ["evaluate", fitted(f), "--data", write(f, "narrow.csv", "a,b\n1,2\n3,4\n")], "lacks 'c'"),
    "array of another width": (lambda f: ["evaluate", fitted(f), "--data", write(f, "narrow.npy", np.ones((4, 2)))],
                               "the model expects"),
    "unknown experiment": (lambda f: ["run", "nope", "--out", "{out}"], "unknown experiment 'nope'"),
    "zero samples": (lambda f: ["sample", fitted(f), "-n", "0", "--out", "{out}.npz"], "positive integer"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gets_one_clear_line(name, tmp_path, capsys):
    build, expected = CASES[name]
    argv = [a.replace("{out}", str(tmp_path / "out")) for a in build(tmp_path)]
    capsys.readouterr()
    before = {p.name for p in tmp_path.iterdir()}
    code = main(argv)
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2, (name, err)
    assert err.startswith("dlvm: error: ") and len(err.splitlines()) == 1, err
    assert expected in err, err
    assert "Traceback" not in err and "this ran" not in captured.out
    assert {p.name for p in tmp_path.iterdir()} == before  # nothing written, nothing half-written


def test_python_api_errors_are_clear():
    from dlvm.inference import CheckpointError, evaluate, fit, load_checkpoint
    from dlvm.models import FactorAnalysis, build_model

    with pytest.raises(ValueError, match="latent dimension"):
        FactorAnalysis(5, 0)
    with pytest.raises(ValueError, match="unknown model"):
        build_model("nope", (3,), {})
    model = FactorAnalysis(3, 1)
    from dlvm.guides import pair
    trained, guide = pair(model, "exact", (3,))
    with pytest.raises(ValueError, match="missing \\(NaN\\)"):
        fit(trained, guide, np.array([[1.0, np.nan, 2.0], [1, 2, 3]]), progress=False)
    with pytest.raises(ValueError, match="at least 1"):
        evaluate(trained, guide, np.ones((2, 3)), num_samples=0)
    with pytest.raises(ValueError, match="2 or more dimensions"):
        fit(trained, guide, np.ones(3), progress=False)
    with pytest.raises(CheckpointError):
        load_checkpoint(__file__)
    assert torch.is_tensor(model.loadings)
