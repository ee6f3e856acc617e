"""Write the schema a Letta version's ORM declares to the JSON file named by argv[1].

Standalone on purpose: it runs inside the Letta server's own environment, where this
package is not installed, so it imports only Letta and SQLAlchemy.  ``LETTA_PG_URI`` must
be set (the ORM picks column types at import time); nothing connects to it.  The output
goes to a file because Letta logs to stdout while it is imported.
"""

import json
import sys

from sqlalchemy import FetchedValue, ForeignKeyConstraint, Index, UniqueConstraint
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import DefaultClause

import letta.orm  # noqa: F401 - importing registers every model on Base.metadata
from letta.orm.base import Base

DIALECT = postgresql.dialect()


def column_type(column) -> str:
    try:
        return column.type.compile(dialect=DIALECT)
    except Exception:  # noqa: BLE001 - a type the dialect cannot render: keep its class name
        return type(column.type).__name__.upper()


def server_default(column):
    default = column.server_default
    if default is None:
        return None
    if isinstance(default, DefaultClause):
        arg = default.arg
        return str(arg.compile(dialect=DIALECT)) if hasattr(arg, "compile") else str(arg)
    if isinstance(default, FetchedValue):
        return "fetched"  # the database must generate the value (e.g. messages.sequence_id)
    return type(default).__name__


def table_schema(table) -> dict:
    uniques, foreign_keys = [], []
    for constraint in table.constraints:
        columns = [c.name for c in constraint.columns]
        if isinstance(constraint, UniqueConstraint):
            uniques.append({"name": constraint.name if isinstance(constraint.name, str) else None,
                            "columns": columns})
        elif isinstance(constraint, ForeignKeyConstraint):
            foreign_keys.append({"name": constraint.name if isinstance(constraint.name, str) else None,
                                 "columns": columns, "ref_table": constraint.referred_table.name,
                                 "ref_columns": [e.column.name for e in constraint.elements],
                                 "ondelete": (constraint.ondelete or "").upper() or None})
    for column in table.columns:  # Column(unique=True) makes no UniqueConstraint object
        if column.unique and not any(u["columns"] == [column.name] for u in uniques):
            uniques.append({"name": None, "columns": [column.name]})
    indexes = [{"name": index.name if isinstance(index.name, str) else None,
                "columns": [getattr(e, "name", None) or str(e) for e in index.expressions],
                "unique": bool(index.unique)}
               for index in table.indexes if isinstance(index, Index)]
    return {
        "columns": {c.name: {"type": column_type(c), "nullable": bool(c.nullable),
                             "server_default": server_default(c), "primary_key": bool(c.primary_key),
                             "enum_values": sorted(getattr(c.type, "enums", None) or []) or None}
                    for c in table.columns},
        "uniques": uniques,
        "foreign_keys": foreign_keys,
        "indexes": indexes,
    }


def main() -> None:
    tables = {name: table_schema(table) for name, table in sorted(Base.metadata.tables.items())}
    with open(sys.argv[1], "w", encoding="utf-8") as out:
        json.dump({"letta_version": letta.__version__, "tables": tables}, out, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
