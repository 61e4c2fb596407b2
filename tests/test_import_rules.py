"""The architecture, checked on the source: which package may import which, and no work at import.

Dependency direction (project packages: consent, vault, aggregation, clients, server):

* ``consent`` imports no other project package: consent terms are pure and shared by everyone.
* ``vault`` imports only ``consent``.
* ``aggregation`` imports only ``vault`` and ``consent``, and never ``vault.api`` (the vault's web
  layer): it works on the vault's services, not on its HTTP routes.
* ``clients`` imports no project package, with one exception: *inside a function* it may import
  ``vault.bundle`` (offline verification of an export bundle, the same code the vault signs with)
  and ``consent`` (to check terms before agreeing to them). Kept inside functions so that a client
  that never verifies does not load the vault.
* Nothing in these packages imports ``server`` (the composition root, which imports them all) or
  the ``*.api`` web layer of another package.

Imports under ``if TYPE_CHECKING:`` count too: a dependency through types is still a dependency.

No work at import time (a heuristic): a module's top level holds only imports, function and class
definitions, docstrings, ``if TYPE_CHECKING:`` / ``if __name__ == "__main__":`` blocks, and
assignments whose value is a constant, a type alias or a call from ``DEFINITION_CALLS`` (cheap,
pure constructors such as ``TypeVar`` or ``re.compile``). Settings, keys, engines and clients are
made when asked for, never on import. ``__main__.py`` files are exempt: they only ever run as
programs.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PROJECT_PACKAGES = frozenset({"consent", "vault", "aggregation", "clients", "server"})
CHECKED_PACKAGES = ("consent", "vault", "aggregation", "clients")

# The project packages each package may import anywhere (itself always).
ALLOWED: dict[str, frozenset[str]] = {
    "consent": frozenset(),
    "vault": frozenset({"consent"}),
    "aggregation": frozenset({"vault", "consent"}),
    "clients": frozenset(),
}
# Modules a package may import only inside a function body (prefix match on whole names).
ALLOWED_IN_FUNCTIONS: dict[str, tuple[str, ...]] = {
    "clients": ("vault.bundle", "consent"),
}

# Calls allowed as the value of a top-level assignment, matched on the callee's last name or on its
# full dotted name (for a project's own pure constructor).
DEFINITION_CALLS = frozenset(
    {
        # typing
        "TypeVar", "ParamSpec", "TypeVarTuple", "NewType", "NamedTuple", "TypedDict", "cast",
        "TypeAdapter",
        # immutable values and cheap constructors
        "frozenset", "tuple", "MappingProxyType", "Decimal", "timedelta", "timezone", "Path",
        "PurePosixPath", "Struct", "compile", "namedtuple", "object", "field", "StashKey",
        "ContextVar", "getLogger",
        # FastAPI declarations (routes are registered by decorators on definitions)
        "APIRouter", "Depends", "Security", "HTTPBearer", "HTTPBasic", "APIKeyHeader",
        "OAuth2PasswordBearer", "Query", "Header", "Body", "Path",
        # a lock guarding process-wide state the standard library already holds (the collector's
        # switch, aggregation/collector_pause.py): no I/O, nothing configured
        "threading.Lock",
        # the project's own: a table lookup of constants
        "KdfCost.profile",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Import:
    line: int
    module: str  # absolute dotted name
    in_function: bool


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def module_name(path: Path, root: Path = REPO) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def python_files(package: str, root: Path = REPO) -> list[Path]:
    base = root / package
    if not base.is_dir():
        return []
    return sorted(
        p
        for p in base.rglob("*.py")
        if not any(
            part.startswith(".") or part in ("node_modules", "__pycache__") for part in p.parts
        )
    )


def _resolve_relative(module: str | None, level: int, importer: str, is_package: bool) -> str:
    if level == 0:
        return module or ""
    base = importer.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[: -(level - 1)]
    return ".".join([*base, module] if module else base)


class _ImportCollector(ast.NodeVisitor):
    def __init__(self, importer: str, is_package: bool) -> None:
        self.importer = importer
        self.is_package = is_package
        self.imports: list[Import] = []
        self._depth = 0

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def _add(self, line: int, module: str) -> None:
        if module:
            self.imports.append(Import(line, module, self._depth > 0))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(node.lineno, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = _resolve_relative(node.module, node.level, self.importer, self.is_package)
        for alias in node.names:
            # ``from vault import api`` imports the module vault.api; for a plain name the
            # extra dotted name is harmless (it starts with the same package).
            self._add(node.lineno, f"{base}.{alias.name}" if alias.name != "*" else base)

    def visit_Call(self, node: ast.Call) -> None:
        # importlib.import_module("x") / __import__("x") with a literal name.
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name in ("import_module", "__import__") and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                self._add(node.lineno, first.value)
        self.generic_visit(node)


def collect_imports(source: str, importer: str, is_package: bool = False) -> list[Import]:
    collector = _ImportCollector(importer, is_package)
    collector.visit(ast.parse(source))
    return collector.imports


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def dependency_violations(package: str, imp: Import) -> Iterator[str]:
    target = imp.module.split(".")[0]
    if target not in PROJECT_PACKAGES or target == package:
        return
    if target == "server":
        yield f"imports {imp.module}: nothing may import server, the composition root"
        return
    if "api" in imp.module.split(".")[1:]:
        yield f"imports {imp.module}: the web layer of another package is off limits"
        return
    if target in ALLOWED[package]:
        return
    in_functions = ALLOWED_IN_FUNCTIONS.get(package, ())
    if any(_within(imp.module, allowed) for allowed in in_functions):
        if imp.in_function:
            return
        yield f"imports {imp.module} at module level: {package} may only inside a function"
        return
    allowed = sorted(ALLOWED[package]) or ["no project package"]
    yield f"imports {imp.module}: {package} may import only {', '.join(allowed)}"


def _is_definition_value(node: ast.expr | None) -> bool:
    """A constant, a name, a type expression, or a call from DEFINITION_CALLS on such values."""
    if node is None:
        return True
    match node:
        case ast.Constant() | ast.Name() | ast.Lambda():
            return True
        case ast.Attribute(value=value):
            return _is_definition_value(value)
        case ast.Subscript(value=value, slice=index):
            return _is_definition_value(value) and _is_definition_value(index)
        case ast.Tuple(elts=elts) | ast.List(elts=elts) | ast.Set(elts=elts):
            return all(_is_definition_value(e) for e in elts)
        case ast.Dict(keys=keys, values=values):
            return all(_is_definition_value(k) for k in keys) and all(
                _is_definition_value(v) for v in values
            )
        case ast.BinOp(left=left, right=right):
            return _is_definition_value(left) and _is_definition_value(right)
        case ast.UnaryOp(operand=operand):
            return _is_definition_value(operand)
        case ast.JoinedStr(values=values):
            return all(_is_definition_value(v) for v in values)
        case ast.FormattedValue(value=value):
            return _is_definition_value(value)
        case ast.Starred(value=value):
            return _is_definition_value(value)
        case ast.Call(func=func, args=args, keywords=keywords):
            callee = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            return (
                (callee in DEFINITION_CALLS or ast.unparse(func) in DEFINITION_CALLS)
                and all(_is_definition_value(a) for a in args)
                and all(_is_definition_value(k.value) for k in keywords)
            )
    return False


def _is_guard(test: ast.expr, name: str) -> bool:
    """``if TYPE_CHECKING:`` / ``if typing.TYPE_CHECKING:`` / ``if __name__ == "__main__":``."""
    if name == "TYPE_CHECKING":
        return (isinstance(test, ast.Name) and test.id == name) or (
            isinstance(test, ast.Attribute) and test.attr == name
        )
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and len(test.comparators) == 1
        and isinstance(test.comparators[0], ast.Constant)
        and test.comparators[0].value == "__main__"
    )


def import_time_work(source: str) -> Iterator[tuple[int, str]]:
    """(line, statement) for each top-level statement that does more than define something."""
    tree = ast.parse(source)
    for index, stmt in enumerate(tree.body):
        match stmt:
            case ast.Import() | ast.ImportFrom() | ast.FunctionDef() | ast.AsyncFunctionDef():
                continue
            case ast.ClassDef() | ast.Pass():
                continue
            case ast.Expr(value=ast.Constant(value=str())) if index == 0:
                continue  # the module docstring
            case ast.Assign(value=value) if _is_definition_value(value) and all(
                isinstance(t, ast.Name) for t in stmt.targets
            ):
                continue
            case ast.AnnAssign(target=ast.Name(), value=value) if _is_definition_value(value):
                continue
            case ast.If(test=test, orelse=[]) if _is_guard(test, "TYPE_CHECKING") or _is_guard(
                test, "__main__"
            ):
                continue
        if type(stmt).__name__ == "TypeAlias":  # ``type X = ...`` (Python 3.12+)
            continue
        yield stmt.lineno, ast.unparse(stmt).splitlines()[0][:80]


# --------------------------------------------------------------------------------------------------
# The rules, on the project's code
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("package", CHECKED_PACKAGES)
def test_dependency_direction(package: str) -> None:
    found: list[Violation] = []
    for path in python_files(package):
        importer = module_name(path)
        for imp in collect_imports(
            path.read_text(encoding="utf-8"), importer, path.stem == "__init__"
        ):
            for message in dependency_violations(package, imp):
                found.append(Violation(str(path.relative_to(REPO)), imp.line, message))
    assert not found, f"{len(found)} import(s) against the dependency rules:\n" + "\n".join(
        map(str, found)
    )


@pytest.mark.parametrize("package", CHECKED_PACKAGES)
def test_no_work_at_import_time(package: str) -> None:
    found = [
        Violation(str(path.relative_to(REPO)), line, f"runs at import time: {code}")
        for path in python_files(package)
        if path.name != "__main__.py"
        for line, code in import_time_work(path.read_text(encoding="utf-8"))
    ]
    assert not found, (
        f"{len(found)} top-level statement(s) that do work on import (move them into a function; "
        "if it is a pure definition, add the callee to DEFINITION_CALLS):\n"
        + "\n".join(map(str, found))
    )


def test_the_checked_packages_exist() -> None:
    """A renamed package must not make the rules above pass by checking nothing."""
    assert python_files("consent") and python_files("vault")


# --------------------------------------------------------------------------------------------------
# The checker itself catches what it should
# --------------------------------------------------------------------------------------------------


def _messages(package: str, source: str, importer: str) -> list[str]:
    return [
        message
        for imp in collect_imports(source, importer)
        for message in dependency_violations(package, imp)
    ]


def test_checker_resolves_relative_and_aliased_imports() -> None:
    source = "from .. import api\nfrom ...server import app\nfrom vault import api as web\n"
    imports = collect_imports(source, "aggregation.x.y")
    assert [i.module for i in imports] == ["aggregation.api", "server.app", "vault.api"]
    assert _messages("aggregation", source, "aggregation.x.y") == [
        "imports server.app: nothing may import server, the composition root",
        "imports vault.api: the web layer of another package is off limits",
    ]


def test_checker_enforces_each_direction() -> None:
    assert _messages("consent", "import vault.models\n", "consent.terms")
    assert _messages("vault", "from aggregation import releases\n", "vault.x")
    assert not _messages("vault", "from consent.canonical import canonical_json\n", "vault.x")
    assert not _messages("aggregation", "from vault.services import reading\n", "aggregation.q")
    assert _messages(
        "vault", "import importlib\nimportlib.import_module('server.cli')\n", "vault.x"
    )


def test_checker_allows_clients_the_offline_verifier_only_inside_functions() -> None:
    inside = "def verify(b):\n    from vault.bundle import verify_bundle\n    import consent\n"
    assert not _messages("clients", inside, "clients.python.cli")
    assert _messages("clients", "from vault.bundle import verify_bundle\n", "clients.python.cli")
    assert _messages("clients", "def f():\n    import vault.models\n", "clients.python.cli")


def test_checker_flags_work_at_import_time() -> None:
    clean = (
        '"""Doc."""\nfrom __future__ import annotations\nfrom typing import TYPE_CHECKING\n'
        "import re\nif TYPE_CHECKING:\n    import x\nLIMIT = 16 * 1024\n"
        "PATTERN = re.compile('a+')\n"
        "Alias = dict[str, int | None]\nlog = logging.getLogger(__name__)\n"
        "def main() -> None: ...\nif __name__ == '__main__':\n    main()\n"
    )
    assert list(import_time_work(clean)) == []
    busy = "import os\nSETTINGS = Settings.from_env()\nprint('hi')\nos.makedirs('var')\n"
    assert [line for line, _ in import_time_work(busy)] == [2, 3, 4]
