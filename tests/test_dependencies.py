"""The packages' dependency rule: model at the base; tff_sim and export on it,
never importing each other; benchmarks on top.

Every import statement counts, including those inside functions.
"""

from __future__ import annotations

import ast
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

#: Package -> the project packages it must not import.
FORBIDDEN = {
    "model": ("tff_sim", "export", "benchmarks"),
    "tff_sim": ("export", "benchmarks"),
    "export": ("tff_sim", "benchmarks"),
    "benchmarks": (),
}


def _imported_modules(tree: ast.AST, module: str,
                      is_package: bool) -> list[tuple[int, str]]:
  """(line, absolute module name) of every import in ``tree``."""
  found = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      found.extend((node.lineno, alias.name) for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      if node.level:  # relative: resolve against the importing module
        parts = module.split(".")
        base = parts[:len(parts) - node.level + (1 if is_package else 0)]
        name = ".".join(base + ([node.module] if node.module else []))
      else:
        name = node.module or ""
      found.append((node.lineno, name))
  return found


def violations(root: pathlib.Path) -> list[str]:
  """``file:line: imports X`` for every import breaking :data:`FORBIDDEN`.

  Args:
    root: Directory holding the packages.
  """
  problems = []
  for package, forbidden in FORBIDDEN.items():
    for path in sorted((root / package).rglob("*.py")):
      relative = path.relative_to(root)
      is_package = path.name == "__init__.py"
      module = ".".join(relative.with_suffix("").parts)
      if is_package:
        module = module.rsplit(".", 1)[0]
      tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
      for line, name in _imported_modules(tree, module, is_package):
        top = name.split(".")[0]
        if top in forbidden:
          problems.append(f"{relative}:{line}: {package} imports {name} "
                          f"(forbidden: {package} must not import "
                          f"{', '.join(forbidden)})")
  return problems


def test_packages_follow_the_dependency_rule():
  for package in FORBIDDEN:
    assert (ROOT / package / "__init__.py").exists(), package
  problems = violations(ROOT)
  assert not problems, "dependency rule broken:\n" + "\n".join(problems)


@pytest.mark.parametrize("package,source,expected", [
    ("model", "import tff_sim.simulation\n", "imports tff_sim.simulation"),
    ("export", "def f():\n  from tff_sim import fedsa\n",
     "export/x.py:2: export imports tff_sim"),
    ("tff_sim", "from benchmarks.report import x\n",
     "imports benchmarks.report"),
    ("tff_sim", "class A:\n  def f(self):\n    import export.manifest as m\n",
     "tff_sim/x.py:3: tff_sim imports export.manifest"),
])
def test_checker_names_file_line_and_import(tmp_path, package, source,
                                            expected):
  for name in FORBIDDEN:
    os.makedirs(tmp_path / name / "sub")
    (tmp_path / name / "__init__.py").write_text("")
    (tmp_path / name / "sub" / "__init__.py").write_text("")
  (tmp_path / package / "x.py").write_text(source)
  (tmp_path / "model" / "ok.py").write_text(
      "import numpy\nfrom model import sub\nfrom . import sub\n")
  (tmp_path / "model" / "sub" / "ok.py").write_text(
      "from .. import ok\nfrom ..sub import ok as other\n")
  (tmp_path / "benchmarks" / "ok.py").write_text(
      "import tff_sim\nimport export\nimport model\n")
  problems = violations(tmp_path)
  assert len(problems) == 1, problems
  assert expected in problems[0], problems
