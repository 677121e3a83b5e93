"""The table registry is the one place of a table's facts: every schema has its table, keys and partition columns
exist, call sites name tables only through it, and reads, writes and schema growth work on real Delta tables."""

from __future__ import annotations

import ast
import re
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import write_deltalake

import hca_assets
from hca_assets.config import Settings
from hca_assets.lake import registry, schemas
from hca_assets.lake.warehouse import query_rows


def test_every_schema_has_one_table_and_its_columns() -> None:
    defined = {name for name in schemas.__all__ if isinstance(getattr(schemas, name), pa.Schema)}
    assert {t.name.upper() for t in registry.TABLES.values()} == defined
    for t in registry.TABLES.values():
        assert set(t.keys) | set(t.partition_by) <= set(t.schema.names), t.name
        assert registry.spec(t.name) is t and getattr(registry, t.name.upper()) is t
    assert registry.restricted_names() == {"raw_instances", "deid_crosswalk"}
    assert {t.name for t in registry.lake_tables()} >= {"series", "studies", "index_builds", "runs"}
    with pytest.raises(KeyError, match="no table 'nope'"):
        registry.spec("nope")


def test_read_write_columns_and_a_grown_schema(tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path / "data"))
    q = registry.QUARANTINE
    assert q.read(settings).schema == q.schema and not q.exists(settings)  # not written yet: empty, typed
    now = datetime.now(UTC)
    old = pa.table({"batch": ["b0"], "stage": ["raw_dicom"], "sha256": ["0" * 64], "reason": ["not_dicom"],
                    "message": ["m"], "kept_as": ["b0/x"], "quarantined_at": pa.array([now], pa.timestamp("us", "UTC"))})
    write_deltalake(q.uri(settings), old, partition_by=["batch"])  # a table written before `item` existed
    rows = [{"batch": "b1", "stage": "raw_dicom", "item": i, "sha256": None, "reason": "empty_file", "message": "m",
             "kept_as": f"b1/{i}", "quarantined_at": now} for i in range(2)]
    written = q.write(settings, pa.Table.from_pylist(rows, schema=q.schema), match={"batch": "b1", "stage": "raw_dicom"})
    assert (written.row_count, written.table_uri) == (2, q.uri(settings)) and written.delta_version == 1
    assert q.read(settings, where={"batch": "b1"}, columns=["item"]).to_pylist() == [{"item": 0}, {"item": 1}]
    assert sorted(r["item"] is None for r in q.read(settings).to_pylist()) == [False, False, True]  # old row: null
    columns, result = query_rows(settings, "SELECT batch, count(item) AS items, count(*) AS n FROM quarantine "
                                           "GROUP BY 1 ORDER BY 1")
    assert columns == ["batch", "items", "n"] and result == [("b0", 0, 1), ("b1", 2, 2)]


def _code_strings(tree: ast.AST) -> list[ast.Constant]:
    """String constants of ``tree`` that are not docstrings (f-string parts included)."""
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return [n for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def test_no_table_is_named_by_a_string_outside_the_registry() -> None:
    """Code addresses a table through its TableSpec: no `table_uri("x")` / `spec("x")`, no SQL naming a table in
    a literal, no table name as a key of a literal mapping — only the registry and the schemas spell the names."""
    package = Path(hca_assets.__file__).parent
    names = set(registry.TABLES)
    sql = re.compile(r"\b(?:from|join)\s+(\w+)", re.IGNORECASE)
    found = []
    for path in sorted(package.rglob("*.py")):
        if path.relative_to(package).as_posix() in ("lake/registry.py", "lake/schemas.py"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
                    and (node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", ""))
                    in ("table_uri", "spec", "TableSpec")):
                found.append(f"{path.name}:{node.lineno} {ast.unparse(node)}")
            if isinstance(node, ast.Dict):
                keys = [k.elts[0] if isinstance(k, ast.Tuple) and k.elts else k for k in node.keys]
                found += [f"{path.name}:{k.lineno} key {k.value!r}" for k in keys
                          if isinstance(k, ast.Constant) and k.value in names and _is_table_map(node)]
        found += [f"{path.name}:{s.lineno} {m.group(0)!r}" for s in _code_strings(tree) for m in sql.finditer(s.value)
                  if m.group(1) in names]
    assert len(names) > 20 and not found, "table names spelled outside the registry:\n" + "\n".join(found)


def _is_table_map(node: ast.Dict) -> bool:
    """A literal mapping keyed by table names (or (table, column) pairs), not rows that merely have such a column."""
    return bool(node.keys) and all(isinstance(k, ast.Tuple) for k in node.keys)
