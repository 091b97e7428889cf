"""Packages talk through their public `__init__`: a module of one package may import
another package only as `from probo.<package> import <name>` with the name in that
package's `__all__`, never one of its modules (`probo.<package>.<module>`)."""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from pathlib import Path

PROBO = Path(__file__).resolve().parents[2] / "probo"
PACKAGES = sorted(p.name for p in PROBO.iterdir() if (p / "__init__.py").exists())


def _own_package(path: Path) -> str | None:
    parts = path.relative_to(PROBO).parts
    return parts[0] if len(parts) > 1 else None  # None: a top-level module


def _imports(path: Path) -> Iterator[tuple[int, str, list[str]]]:
    """(line, module, names) of every `import` and `from ... import` in `path`."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module, [alias.name for alias in node.names]


def _crossings(path: Path, own: str | None) -> Iterator[str]:
    """What `path`, a module of package `own` (None: top level), imports across packages
    in a way other than their public `__init__`."""
    for line, module, names in _imports(path):
        parts = module.split(".")
        if parts[0] != "probo" or len(parts) < 2 or parts[1] not in PACKAGES or parts[1] == own:
            continue
        shown = path.relative_to(PROBO.parent) if path.is_relative_to(PROBO) else path.name
        where = f"{shown}:{line}"
        if len(parts) > 2:
            yield f"{where} imports {module}, an internal module of probo.{parts[1]}"
            continue
        public = set(importlib.import_module(module).__all__)
        for name in names:
            if name not in public:
                yield f"{where} imports {name} from {module}, which does not export it"


def test_packages_import_each_other_only_through_their_public_init() -> None:
    crossings = [
        crossing
        for path in sorted(PROBO.rglob("*.py"))
        for crossing in _crossings(path, _own_package(path))
    ]
    assert crossings == []


def test_the_check_sees_an_internal_import(tmp_path: Path) -> None:
    module = tmp_path / "probe.py"
    module.write_text(
        "from probo.ledger.writer import LedgerWriter\n"
        "from probo.ledger import _x\n"
        "from probo.ledger import LedgerWriter\n"
        "from probo.trading.service import TradingService\n"
    )
    found = list(_crossings(module, "trading"))
    assert found == [
        "probe.py:1 imports probo.ledger.writer, an internal module of probo.ledger",
        "probe.py:2 imports _x from probo.ledger, which does not export it",
    ]
