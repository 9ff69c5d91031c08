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


def test_ci_runs_the_readme_test_command():
    readme = (config.ROOT / "README.md").read_text()
    line = re.search(r"<!-- test-command -->\s*```bash\n(.+?)\n```", readme, re.S).group(1).splitlines()[-1]
    install, command = (part.strip() for part in line.rsplit("&&", 1))
    ci = (config.ROOT / ".ci" / "run").read_text()
    assert f"\n{command}\n" in ci, f"CI does not run README's test command {command!r}"
    assert '-e ".[test]"' in install and '-e ".[test]"' in ci
