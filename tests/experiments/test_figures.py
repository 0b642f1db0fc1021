"""The check that a figure shows something: blank and empty figures fail it, real ones pass."""
import numpy as np
import pytest

from dlvm.experiments.reporting.plots import check_figure, figure, ink_fraction, save_figure_at


def saved(tmp_path, name, draw):
    fig, ax = figure()
    draw(ax)
    return save_figure_at(fig, tmp_path / f"{name}.png")


@pytest.mark.parametrize("name, draw", [
    ("blank", lambda ax: ax.axis("off")),
    ("empty axes", lambda ax: None),
    ("all NaN", lambda ax: ax.plot(np.full(50, np.nan))),
    ("constant line", lambda ax: ax.plot(np.ones(50))),
])
def test_blank_or_degenerate_figures_fail(tmp_path, name, draw):
    path = saved(tmp_path, name, draw)
    with pytest.raises(ValueError, match="shows \\(almost\\) nothing"):
        check_figure(path)


def test_figures_with_data_pass(tmp_path):
    rng = np.random.default_rng(0)
    for name, draw in {"curve": lambda ax: ax.plot(rng.normal(size=200).cumsum()),
                       "scatter": lambda ax: ax.scatter(*rng.normal(size=(2, 300)), s=6),
                       "image": lambda ax: ax.imshow(rng.random((8, 8)), cmap="gray_r")}.items():
        path = saved(tmp_path, name, draw)
        check_figure(path)
        assert ink_fraction(path) > 0.01, name
