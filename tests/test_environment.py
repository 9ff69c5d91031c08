"""environment.yml stays in step with pyproject.toml; .ci/run runs README's test command."""

import re
import sys

import yaml

from aicourse import config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PYPROJECT = tomllib.loads((config.ROOT / "pyproject.toml").read_text())["project"]
ENV = yaml.safe_load((config.ROOT / "environment.yml").read_text())


def test_environment_installs_the_package_with_every_extra():
    pip = next(d["pip"] for d in ENV["dependencies"] if isinstance(d, dict))
    [line] = [p for p in pip if "." in p]
    extras = set(re.search(r"\[(.*)\]", line).group(1).split(","))
    assert extras == set(PYPROJECT["optional-dependencies"])


def test_environment_python_matches_requires_python():
    [py] = [d for d in ENV["dependencies"] if isinstance(d, str) and d.startswith("python")]
    assert re.search(r">=([\d.]+)", py).group(1) == re.search(r">=([\d.]+)", PYPROJECT["requires-python"]).group(1)


def test_dependencies_have_lower_bounds_not_pins():
    deps = PYPROJECT["dependencies"] + sum(PYPROJECT["optional-dependencies"].values(), [])
    assert not [d for d in deps if "==" in d], "exact pins break Colab's preinstalled torch/numpy"
    assert any(d.startswith("nbval>=0.11") for d in deps)


def _readme_command(marker):
    sys.path.insert(0, str(config.ROOT / ".ci"))
    try:
        from readme_command import readme_command
    finally:
        sys.path.pop(0)
    return readme_command(marker)


def test_ci_runs_the_readme_test_command_as_written():
    """CI installs system packages only, then runs README's command read from its marker, on no pinned torch."""
    ci = (config.ROOT / ".ci" / "run").read_text()
    code = "\n".join(line for line in ci.splitlines() if not line.lstrip().startswith("#"))
    assert "readme_command.py test-command" in code and 'eval "$command"' in code
    assert not re.search(r"pip(3)? install|uv pip|==\d", code), "CI installs or pins Python packages of its own"
    assert _readme_command("test-command") == 'pip install -e ".[test]" && python -m pytest'
    assert _readme_command("run-command") == 'pip install -e ".[lab]" && aicourse run'


def _extras(name, seen=None):
    """The requirement strings an extra brings, its self-references (aicourse[a,b]) expanded."""
    seen = set() if seen is None else seen
    out = []
    for req in PYPROJECT["optional-dependencies"][name]:
        m = re.match(r"aicourse\[(.+)\]", req)
        if m:
            for extra in m.group(1).split(","):
                if extra not in seen:
                    seen.add(extra)
                    out += _extras(extra, seen)
        else:
            out.append(req)
    return out


def _dist_name(req: str) -> str:
    return re.match(r"[A-Za-z0-9_.\-]+", req).group(0).lower().replace("_", "-")


def _closure(names):
    """Distributions installed by requiring ``names`` (their requirements, recursively, extras aside)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    todo, seen = list(names), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for raw in requires:
            req = Requirement(raw)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name.lower().replace("_", "-"))
    return seen


def _notebook_imports():
    """(notebook, top-level module) for every import statement in every notebook's code cells."""
    import ast

    import nbformat

    from aicourse.notebooks import all_notebooks

    found = set()
    for path in all_notebooks():
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type != "code":
                continue
            source = "\n".join(line[:len(line) - len(line.lstrip())] + "pass"  # an IPython magic or shell line
                               if line.lstrip().startswith(("%", "!")) else line for line in cell.source.splitlines())
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.Import):
                    found |= {(path.stem, a.name.split(".")[0]) for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add((path.stem, node.module.split(".")[0]))
    return found


def test_the_run_command_installs_every_module_a_notebook_imports():
    """README's run command (pip install -e ".[lab]") must bring every module any notebook imports:
    the standard library, the package itself, or a distribution that the core dependencies and the
    lab extra require (directly or through their own requirements)."""
    from importlib import metadata

    provided = _closure({_dist_name(r) for r in PYPROJECT["dependencies"] + _extras("lab")})
    by_module = metadata.packages_distributions()
    missing = []
    for notebook, module in sorted(_notebook_imports()):
        if module in sys.stdlib_module_names or module == "aicourse":
            continue
        dists = {d.lower().replace("_", "-") for d in by_module.get(module, [])}
        if not dists & provided:
            missing.append(f"{notebook} imports {module} ({', '.join(sorted(dists)) or 'not installed'})")
    assert not missing, "not brought by the run command's extras: " + "; ".join(missing)


def test_the_test_command_brings_the_run_command_and_the_tools():
    test = _extras("test")
    assert set(_extras("lab")) <= set(test)
    for tool in ("nbgrader", "sphinx", "myst-nb", "pytest", "nbval"):
        assert any(_dist_name(r) == tool for r in test), tool
