"""The corpus of bad inputs: each gets one line on stderr, exit status 2 and nothing half-written."""
import json
import pickle
import shutil

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
    options = ["--latent-dim", "2"] if model in ("fa", "ppca") else []
    if not out.exists():
        assert main(["fit", model, "--data", write(folder, "good.csv", GOOD), *options,
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


def good(folder):
    return write(folder, "good.csv", GOOD)


def edited_config(folder, change):
    """A copy of the FA run whose config.json had ``change`` applied by hand."""
    run = folder / "edited"
    shutil.copytree(fitted(folder), run)
    config = json.loads((run / "config.json").read_text())
    config = change(config)
    (run / "config.json").write_text(json.dumps(config))
    return str(run)


def set_latent(value):
    def change(config):
        config["model_options"]["latent_dim"] = value
        return config
    return change


def set_key(key, value):
    def change(config):
        config[key] = value
        return config
    return change


def nan_checkpoint(folder, model="fa"):
    """A copy of a run whose checkpoint holds NaN weights."""
    run = folder / f"nan-{model}"
    shutil.copytree(fitted(folder, model), run)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    state["model"] = {k: v * float("nan") if v.is_floating_point() else v for k, v in state["model"].items()}
    torch.save(state, run / "checkpoint.pt")
    return str(run)


def interrupted(folder):
    """An interrupted FA run: its staging folder {out}.partial with config.json and a checkpoint."""
    shutil.copytree(fitted(folder), folder / "out.partial")
    return good(folder)


def dated(folder, dates):
    rows = "\n".join(f"{d},{v:.3f}" for d, v in zip(dates, np.random.default_rng(0).normal(size=len(dates))))
    return write(folder, "dated.csv", "date,r\n" + rows + "\n")


def windows_npz(folder, name, n):
    return write(folder, name, np.random.default_rng(n).normal(size=(n, 6, 2)))


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
    # checked before any work: every numeric flag in its range
    "negative clip norm": (lambda f: fit_args(good(f), "--clip-norm", "-1"), "--clip-norm must be a finite number above 0"),
    "infinite learning rate": (lambda f: fit_args(good(f), "--lr", "inf"), "--lr must be a finite number above 0, got inf"),
    "NaN learning rate": (lambda f: fit_args(good(f), "--lr", "nan"), "--lr must be a finite number above 0, got nan"),
    "zero restarts": (lambda f: fit_args(good(f), "--restarts", "0", model="gmm"), "--restarts must be a positive integer"),
    "zero IWAE samples": (lambda f: fit_args(good(f), "--iwae-samples", "0"), "--iwae-samples must be a positive integer"),
    "zero epochs": (lambda f: fit_args(good(f), "--epochs", "0"), "--max-epochs must be a positive integer"),
    "learning-rate decay above 1": (lambda f: fit_args(good(f), "--lr-decay", "2"), "--lr-decay must be in (0, 1]"),
    "seed beyond 32 bits": (lambda f: fit_args(good(f), "--seed", "99999999999999999999"),
                            "--seed must be an integer from 0 to 4294967295"),
    "negative seed": (lambda f: ["sample", fitted(f), "-n", "2", "--seed", "-1", "--out", "{out}.npz"], "--seed must be"),
    "too many samples": (lambda f: ["sample", fitted(f), "-n", "99999999999", "--out", "{out}.npz"], "-n must be at most"),
    "text where a number goes": (lambda f: fit_args(good(f), "--lr", "fast"), "argument --lr: invalid float value: 'fast'"),
    "missing required flags": (lambda f: ["fit", "fa"], "the following arguments are required: --data, --out"),
    "unknown command": (lambda f: ["nope"], "invalid choice: 'nope'"),
    # input that says what it is
    "decimal commas in a comma-separated file": (
        lambda f: fit_args(write(f, "dec.csv", 'a,b\n"1,5",2\n"2,5",3\n"3,5",1\n')), "holds decimal commas"),
    "';' header over uneven rows": (lambda f: fit_args(write(f, "uneven.csv", "a;b;c\n1;2;3\n4;5\n")),
                                    "the header splits on ';' but the rows do not split evenly"),
    "dates repeated in a time series": (
        lambda f: fit_args(dated(f, ["2020-01-01", "2020-01-02", "2020-01-02", "2020-01-03"]), model="hmm"),
        "'date' repeats '2020-01-02'"),
    "a date missing in a time series": (
        lambda f: fit_args(write(f, "nodate.csv", "date,r\n2020-01-01,1\n,2\n2020-01-03,3\n"), model="hmm"),
        "'date' is empty in data row 2"),
    "complex .npy": (lambda f: fit_args(write(f, "c.npy", np.ones((5, 3)) + 1j)), "holds complex numbers"),
    "complex .npz": (lambda f: fit_args(write(f, "c.npz", np.ones((5, 3)) * 1j)), "holds complex numbers"),
    "integers beyond 2^53": (
        lambda f: fit_args(write(f, "big.csv", "a,b\n9007199254740993,1\n2,3\n4,5\n")), "beyond 2^53"),
    "integers beyond float32": (
        lambda f: fit_args(write(f, "big32.npy", np.array([[2 ** 25 + 1, 0], [1, 1], [0, 1]])), model="vae"),
        "beyond 2^24: float32 cannot hold them exactly"),
    "all-NaN column under --missing mask": (
        lambda f: fit_args(write(f, "nancol.csv", "a,b,c\n1,,2\n3,,4\n5,,1\n"), "--missing", "mask"),
        "column 'b' has no values"),
    "values near 1e300 (fa)": (lambda f: fit_args(write(f, "huge.npy", np.random.default_rng(0).normal(size=(20, 3)) * 1e300)),
                               "too large for float64 arithmetic"),
    "values near 1e300 (gmm)": (
        lambda f: fit_args(write(f, "huge.npy", np.random.default_rng(0).normal(size=(20, 3)) * 1e300), model="gmm"),
        "too large for float64 arithmetic"),
    "one-column table for FA": (lambda f: fit_args(write(f, "one.csv", "a\n1\n2\n3\n")), "at least 2 features"),
    "50 rows x 10,000 features for FA": (
        lambda f: fit_args(write(f, "wide.npy", np.random.default_rng(0).normal(size=(50, 10_000)))),
        "too many for the closed-form start"),
    "text file named .npy": (lambda f: fit_args(write(f, "text.npy", "a,b\n1,2\n")), "is not a numpy file"),
    # run files are untrusted input
    "non-finite checkpoint (evaluate)": (lambda f: ["evaluate", nan_checkpoint(f)], "non-finite (NaN or inf) values"),
    "non-finite checkpoint (sample)": (lambda f: ["sample", nan_checkpoint(f), "-n", "3", "--out", "{out}.csv"],
                                       "non-finite (NaN or inf) values"),
    "non-finite checkpoint (diagnose)": (lambda f: ["diagnose", nan_checkpoint(f), "--out", "{out}"],
                                         "non-finite (NaN or inf) values"),
    "non-finite checkpoint (regimes)": (lambda f: ["regimes", nan_checkpoint(f, "gmm"), "--out", "{out}.csv"],
                                        "non-finite (NaN or inf) values"),
    "config.json latent_dim null": (lambda f: ["evaluate", edited_config(f, set_latent(None))],
                                    "'latent_dim' must be an integer of at least 1, not None"),
    "config.json latent_dim as text": (lambda f: ["evaluate", edited_config(f, set_latent("two"))],
                                       "'latent_dim' must be an integer of at least 1, not 'two'"),
    "config.json dtype float16": (lambda f: ["evaluate", edited_config(f, set_key("dtype", "float16"))],
                                  "'dtype' must be one of float32, float64, not 'float16'"),
    "config.json null": (lambda f: ["evaluate", edited_config(f, lambda c: None)], "does not hold a JSON object"),
    "config.json latent_dim too large": (lambda f: ["evaluate", edited_config(f, set_latent(9))],
                                         "describes no model dlvm can build"),
    # a run knows what it was made from
    "resume with another learning rate": (
        lambda f: ["fit", "fa", "--data", interrupted(f), "--latent-dim", "2", "--optimizer", "lbfgs", "--lr", "0.5",
                   "--out", "{out}", "--resume", "--quiet"], "--lr unset, not 0.5 (pass --allow-new-lr"),
    "resume on other data": (
        lambda f: ["fit", "fa", "--data", (interrupted(f), write(f, "other.csv", GOOD.replace("1", "2")))[1],
                   "--latent-dim", "2", "--optimizer", "lbfgs", "--out", "{out}", "--resume", "--quiet"], "other data"),
    "evaluate on other column names": (
        lambda f: ["evaluate", fitted(f), "--data", write(f, "renamed.csv", GOOD.replace("a,b", "x,b", 1))], "lacks 'a'"),
    # commands and their outputs
    "sample into '.'": (lambda f: ["sample", fitted(f), "-n", "2", "--out", "."], "names no file"),
    "regimes into '.'": (lambda f: ["regimes", fitted(f, "gmm"), "--out", ".", "--overwrite"], "is a folder"),
    "unknown compare estimator": (lambda f: ["compare", "fa", "--data", good(f), "--elbos", "trace,nope", "--out", "{out}"],
                                  "unknown estimator 'nope'"),
    "score on 3 synthetic windows": (
        lambda f: ["score", "--real", windows_npz(f, "real.npz", 40), "--synthetic", windows_npz(f, "syn.npz", 3)],
        "needs at least 10 real and 10 synthetic windows, got 40 and 3"),
    "score on windows with NaN": (
        lambda f: ["score", "--real", write(f, "nan.npz", np.where(np.eye(12)[:, :4, None] > 0, np.nan, 1.0)), "--synthetic",
                   windows_npz(f, "syn.npz", 12)], "missing (NaN) values"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gets_one_clear_line(name, tmp_path, capsys):
    build, expected = CASES[name]
    argv = [a.replace("{out}", str(tmp_path / "out")) for a in build(tmp_path)]
    capsys.readouterr()
    before = {p.name for p in tmp_path.iterdir()}
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's errors
        code = stop.code
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2, (name, err)
    assert err.startswith("dlvm: error: ") and len(err.splitlines()) == 1, err
    assert expected in err, err
    assert "--missing" not in err or argv[0] != "score", err  # score has no such flag
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
