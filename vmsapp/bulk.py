"""Statements over many rows at once, without SQLAlchemy's per-row work.

Heartbeats' ``last_seen`` and a reconnect storm's claims and event rows are
written thousands of rows a second. A Core executemany spent 15-50 µs a row in
SQLAlchemy's parameter handling, a fifth of the worker's CPU at the
benchmark's preset. PostgreSQL takes the rows as one array per column, turned
back into rows by ``unnest``, in one of two forms:

- ``insert`` and ``update_by_id``: the whole statement, its SQL written here
  and its values converted once per column and sent as binary arrays (SQLite
  gets an executemany of a plain statement instead);
- ``unnest_table`` and ``unnest_values``: the rows as a table to compose into
  a larger SQLAlchemy statement (a claim and status move in one statement)."""

import sqlalchemy as sa


def insert(connection, table, rows):
    """INSERT ``rows``, dicts with the same keys, into ``table``."""
    if not rows:
        return
    columns = [table.c[name] for name in rows[0]]
    names = ", ".join(column.name for column in columns)
    if connection.dialect.name == "postgresql":
        arrays = _arrays(connection, columns)
        connection.exec_driver_sql(
            f"INSERT INTO {table.name} ({names}) SELECT * FROM unnest({arrays})",
            _as_arrays(connection, columns, rows))
    else:
        connection.exec_driver_sql(
            f"INSERT INTO {table.name} ({names}) VALUES ({', '.join('?' * len(columns))})",
            _as_tuples(connection, columns, rows))


def update_by_id(connection, table, rows, only_later=None, unchanged=(), increment=()):
    """UPDATE the row of ``table`` whose ``id`` each of ``rows`` (dicts with the
    same keys, ``id`` among them) gives, setting its other keys. An id with no
    row matches nothing and fails nothing. With ``only_later`` (a column's
    name), a row is left alone where that column already holds a later value
    than the new one. The keys named in ``unchanged`` are compared, not set:
    a row is left alone where one of those columns no longer holds the value
    given (NULL as a value like any other), a compare-and-set on what the
    caller read. The columns named in ``increment`` (not keys of ``rows``)
    go one up in every row updated, in the same statement.

    On PostgreSQL the rows are locked in id order first, as every status move
    locks its rows (``presence``): the ``last_seen`` flush and another
    worker's connect batch sharing NVRs then wait for each other instead of
    deadlocking."""
    if not rows:
        return
    compared = [table.c[name] for name in unchanged]
    columns = [table.c.id] + [table.c[name] for name in rows[0]
                              if name != "id" and name not in unchanged]
    if connection.dialect.name == "postgresql":
        t = table.name
        given = columns + compared
        names = ", ".join(column.name for column in given)
        assignments = ", ".join([f"{column.name} = v.{column.name}" for column in columns[1:]]
                                + [f"{name} = {t}.{name} + 1" for name in increment])
        later = (f" AND ({t}.{only_later} IS NULL OR {t}.{only_later} < v.{only_later})"
                 if only_later else "")
        same = "".join(f" AND {t}.{column.name} IS NOT DISTINCT FROM v.{column.name}"
                       for column in compared)
        connection.exec_driver_sql(
            f"WITH v AS (SELECT * FROM unnest({_arrays(connection, given)})"
            f" AS v({names})),"
            f" locked AS (SELECT {t}.id FROM {t} JOIN v ON {t}.id = v.id"
            f" ORDER BY {t}.id FOR UPDATE OF {t})"
            f" UPDATE {t} SET {assignments} FROM v, locked"
            f" WHERE {t}.id = v.id AND locked.id = {t}.id{later}{same}",
            _as_arrays(connection, given, rows))
    else:
        assignments = ", ".join([f"{column.name} = ?" for column in columns[1:]]
                                + [f"{name} = {name} + 1" for name in increment])
        parameters = columns[1:] + columns[:1] + compared
        same = "".join(f" AND {column.name} IS ?" for column in compared)
        later = ""
        if only_later:
            later = f" AND ({only_later} IS NULL OR {only_later} < ?)"
            parameters.append(table.c[only_later])
        connection.exec_driver_sql(
            f"UPDATE {table.name} SET {assignments} WHERE id = ?{same}{later}",
            _as_tuples(connection, parameters, rows))


def unnest_table(name, /, **types):
    """A table ``name`` of rows given column by column, ``column=type``, for a
    PostgreSQL statement built with SQLAlchemy: one ``unnest`` of array
    parameters, however many rows, so a statement built on it can be built
    once and run for every batch (``admission._admission_statement``). The values
    go with its execution: ``unnest_values``."""
    arrays = [sa.bindparam(_unnest_parameter(name, column), type_=sa.ARRAY(type_))
              for column, type_ in types.items()]
    # Typed columns, so what a statement returns of them is converted as their
    # type says (a ``UtcDateTime`` comes back in UTC, not the session's zone).
    columns = [sa.column(column, type_) for column, type_ in types.items()]
    return sa.func.unnest(*arrays).table_valued(*columns).render_derived(name=name)


def unnest_values(name, /, **columns):
    """The execution parameters of ``unnest_table(name, …)``: ``column=values`` each."""
    return {_unnest_parameter(name, column): list(values) for column, values in columns.items()}


def _unnest_parameter(name, column):
    # Never a column's name: an execution parameter named like a column of a
    # table the statement updates would be added to what it sets.
    return f"rows_{name}_{column}"


def _arrays(connection, columns):
    """``%b::type[]`` placeholders, one per column: psycopg sends each as a
    binary array."""
    return ", ".join(f"%b::{column.type.compile(dialect=connection.dialect)}[]"
                     for column in columns)


def _processors(connection, columns):
    """Each column's conversion to what the driver takes (None: as it is), as
    SQLAlchemy's own statements do it: the dialect's form of the type, so a
    time reaches SQLite as the same text the ORM writes."""
    dialect = connection.dialect
    return [column.type.dialect_impl(dialect).bind_processor(dialect) or _identity
            for column in columns]


def _identity(value):
    return value


def _as_arrays(connection, columns, rows):
    return tuple([to_db(row[column.name]) for row in rows]
                 for column, to_db in zip(columns, _processors(connection, columns)))


def _as_tuples(connection, columns, rows):
    pairs = list(zip(columns, _processors(connection, columns)))
    return [tuple(to_db(row[column.name]) for column, to_db in pairs) for row in rows]
