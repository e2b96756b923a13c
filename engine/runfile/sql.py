"""Quoting for SQL the readers build as text: DuckDB views and COPY targets cannot take `?`
parameters, and column names come from users' queries, so both kinds of quoting live here once."""

from __future__ import annotations


def sql_literal(value: object) -> str:
    """`value` as a DuckDB string literal (doubled single quotes; any characters, paths too)."""
    return "'" + str(value).replace("'", "''") + "'"


def sql_ident(name: str) -> str:
    """`name` as a DuckDB identifier (doubled double quotes; names may hold any characters)."""
    return '"' + name.replace('"', '""') + '"'
