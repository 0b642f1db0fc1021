"""The README's "Bring your own model" examples run as they are written."""
import re
from pathlib import Path

import matplotlib
import pyro
import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def examples(section: str) -> list[str]:
    text = README.read_text()
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", body, flags=re.S)


@pytest.mark.parametrize("index", range(len(examples("Bring your own model"))))
def test_bring_your_own_model_examples_run(index, capsys):
    matplotlib.use("Agg")
    pyro.clear_param_store()
    code = examples("Bring your own model")[index]
    namespace = {"__name__": f"readme_example_{index}"}
    exec(compile(code, f"README.md example {index}", "exec"), namespace)
    assert capsys.readouterr().out.strip()
    if "svi" in namespace and "nuts" in namespace:
        table = namespace["table"]
        # SVI and NUTS agree on the population mean of the eight schools within a posterior sd
        assert abs(table["SVI"].loc["mu", "mean"] - table["NUTS"].loc["mu", "mean"]) < table["NUTS"].loc["mu", "sd"]
    if "regression" in namespace:
        w = namespace["guide"].median()["w"]
        assert (w - torch.tensor([1.0, -0.5, 0.25])).abs().max() < 0.05
