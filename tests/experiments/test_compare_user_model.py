"""dlvm compare FILE.py:NAME: the estimator comparison of a user's own Pyro model from the CLI."""
import numpy as np
import pandas as pd

from dlvm.experiments.cli import main

MODEL = '''
import pyro, pyro.distributions as dist

def regression(x, y=None):
    w = pyro.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("y", dist.Normal(x @ w, 0.5), obs=y)

def point_guide(x, y=None):
    loc = pyro.param("w_loc", lambda: x.new_zeros(x.shape[1]))
    pyro.sample("w", dist.Delta(loc).to_event(1))
'''


def test_compare_a_model_from_a_python_file(tmp_path, capsys):
    (tmp_path / "mymodel.py").write_text(MODEL)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 3))
    np.savez(tmp_path / "d.npz", x=x, y=x @ [1.0, -0.5, 0.2] + 0.5 * rng.normal(size=100))
    out = tmp_path / "cmp"
    assert main(["compare", f"{tmp_path / 'mymodel.py'}:regression", "--data", str(tmp_path / "d.npz"),
                 "--out", str(out), "--steps", "30", "--draws", "10", "--elbos", "trace,tracegraph"]) == 0
    gradients = pd.read_csv(out / "gradients.csv")
    assert set(gradients.elbo) == {"trace", "tracegraph"} and set(gradients.group) >= {"all"}
    curves = pd.read_csv(out / "curves.csv")
    assert curves.groupby("guide").elbo.apply(lambda e: e.iloc[-1] > e.iloc[0]).all()  # training raised the ELBO
    assert (out / "figures" / "curves.png").is_file()
    # a hand-written guide from the same file: its point estimate draws nothing, so no gradient noise
    out2 = tmp_path / "cmp2"
    assert main(["compare", f"{tmp_path / 'mymodel.py'}:regression", "--guide", f"{tmp_path / 'mymodel.py'}:point_guide",
                 "--data", str(tmp_path / "d.npz"), "--out", str(out2), "--steps", "10", "--draws", "5"]) == 0
    assert (pd.read_csv(out2 / "gradients.csv").variance < 1e-8).all()
    capsys.readouterr()
    assert main(["compare", f"{tmp_path / 'mymodel.py'}:nothing", "--data", str(tmp_path / "d.npz"),
                 "--out", str(tmp_path / "c3")]) == 2
    assert "defines no callable 'nothing'" in capsys.readouterr().err
