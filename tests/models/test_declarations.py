"""Models declare themselves: options (typed, documented, checked), capabilities, the registry
built from the classes, and the package structure the declarations rely on."""
import ast
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import pytest

from dlvm.models import MODELS, ModelOptions, ModelSpec, Registry, option
from dlvm.models.base import LatentVariableModel

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("models", "guides", "inference", "experiments")


def test_every_registered_model_declares_what_the_registry_reads():
    for name, spec in MODELS.items():
        assert spec.cls.name == name and spec.summary and spec.guides
        for field in spec.options.fields():
            assert field.help, f"{name}.{field.name} has no help"
        options = spec.parse_options(spec.example_options)
        assert spec.build(spec.example_shape, spec.example_options) is not None
        assert set(options.to_dict()) == {f.name for f in spec.options.fields()}


def test_options_are_checked_against_their_declaration():
    fa = MODELS["fa"]
    assert fa.parse_options({}).latent_dim == 2
    with pytest.raises(ValueError, match=r"^fa: no option 'components' \(the options are: latent_dim, bayesian\)$"):
        fa.parse_options({"components": 3})
    with pytest.raises(ValueError, match="'latent_dim' must be an integer of at least 1, not 0"):
        fa.parse_options({"latent_dim": 0})
    with pytest.raises(ValueError, match="'bayesian' must be true or false, not 1"):
        fa.parse_options({"bayesian": 1})
    vae = MODELS["vae"].parse_options({"hidden": [8, 4], "noise_scale": 2})
    assert vae.hidden == (8, 4) and vae.noise_scale == 2.0 and isinstance(vae.noise_scale, float)
    with pytest.raises(ValueError, match="'covariance' must be one of full, diag, not 'spherical'"):
        MODELS["gmm"].parse_options({"covariance": "spherical"})
    with pytest.raises(TypeError, match="immutable"):
        option([1], "a list default would be shared between instances")


def test_a_capability_must_agree_with_the_methods():
    with pytest.raises(TypeError, match="declares can_sample but lacks sample"):
        class Claims(LatentVariableModel):
            name = "claims"
            can_sample = True

    with pytest.raises(TypeError, match="does not declare exact_marginal but has log_marginal"):
        class Hides(LatentVariableModel):
            name = "hides"

            def log_marginal(self, x, mask=None):
                return x.sum(-1)

    with pytest.raises(TypeError, match="pairs with the exact guide but has no marginal_model"):
        class NoCollapse(LatentVariableModel):
            name = "no-collapse"
            guides = ("exact",)


def test_registry_lookup_and_duplicate_names():
    registry = Registry("colour", {"red": 1, "blue": 2})
    assert registry.lookup("red") == 1
    with pytest.raises(ValueError, match=r"^unknown colour 'green'; choose one of: red, blue$"):
        registry.lookup("green")
    with pytest.raises(ValueError, match="model 'fa' is declared twice"):
        Registry.of("model", [MODELS["fa"], MODELS["fa"]])


def test_generated_flags_cover_every_option_and_refuse_undeclared_ones(monkeypatch, capsys):
    from dlvm.experiments.cli import build_parser, main
    from dlvm.experiments.cli.flags import add_model_flags, model_options

    parser = build_parser()
    fit = parser._subparsers._group_actions[0].choices["fit"]
    flags = {s: a for a in fit._actions for s in a.option_strings}
    for spec in MODELS.values():
        for field in spec.options.fields():
            flag = field.flag if not (field.kind == "bool" and field.default) else f"--no-{field.flag[2:]}"
            assert flag in flags and field.help in flags[flag].help, (spec.name, flag)
    args = parser.parse_args(["fit", "vae", "--data", "d", "--out", "o", "--hidden", "8,8", "--latent-dim", "3"])
    assert model_options(args, "vae") == {"hidden": [8, 8], "latent_dim": 3}
    args = parser.parse_args(["fit", "fa", "--data", "d", "--out", "o", "--hidden", "8", "--states", "3"])
    with pytest.raises(ValueError, match=r"^fa has no option --states \(its options: --latent-dim, --bayesian\)$"):
        model_options(args, "fa")

    @dataclass(frozen=True)
    class TextLatentDim(ModelOptions):
        latent_dim: str = option("two", "a latent size as a word")

    class Odd(LatentVariableModel):
        name = "odd"
        Options = TextLatentDim

    monkeypatch.setitem(MODELS, "odd", ModelSpec(Odd))
    with pytest.raises(TypeError, match="option latent_dim is declared as int and str"):
        add_model_flags(build_parser())
    monkeypatch.delitem(MODELS, "odd")
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"dlvm {version('dlvm')}"


def _modules():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path, ast.parse(path.read_text())


def test_imports_between_packages_are_relative_and_public_and_local_ones_say_why():
    for path, tree in _modules():
        lines = path.read_text().splitlines()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dlvm"):
                pytest.fail(f"{path}:{node.lineno} imports {node.module} absolutely")
            if isinstance(node, ast.ImportFrom) and node.level >= 2:
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.endswith("__")]
                assert not private, f"{path}:{node.lineno} imports private {private} from another package"
        for function in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            for node in ast.walk(function):
                if isinstance(node, (ast.Import, ast.ImportFrom)):  # a comment on it or up to 3 lines above
                    near = lines[max(node.lineno - 4, 0):node.lineno]
                    assert any("#" in line for line in near), \
                        f"{path}:{node.lineno}: a function-local import without a comment saying why"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def test_module_level_imports_have_no_cycle():
    modules = {_module_name(path) for path, _ in _modules()}
    graph = {}
    for path, tree in _modules():
        name = _module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in tree.body:  # module level only
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:  # a submodule by name, else a name from the target
                    edges.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules else target)
        graph[name] = edges
    graph = {name: {e for e in edges if e in graph and e != name} for name, edges in graph.items()}
    state = {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in graph[node]:
            if state.get(nxt) == "open":
                pytest.fail("import cycle: " + " -> ".join(trail[trail.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"

    for module in graph:
        if module not in state:
            visit(module, [module])
