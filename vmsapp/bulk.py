"""Statements over many rows at once, without SQLAlchemy's per-row work.

Heartbeats' ``last_seen`` and a reconnect storm's claims and event rows are
written thousands of rows a second. A Core executemany spent 15-50 µs a row in
SQLAlchemy's parameter handling, a fifth of the worker's CPU at the preset
(BENCHMARKS.md). Here each value goes through its column type's bind processor
once and then straight to the driver: PostgreSQL gets one statement over binary
arrays (``unnest``), SQLite an executemany of a plain statement."""


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


def update_by_id(connection, table, rows):
    """UPDATE the row of ``table`` whose ``id`` each of ``rows`` (dicts with the
    same keys, ``id`` among them) gives, setting its other keys. An id with no
    row matches nothing and fails nothing."""
    if not rows:
        return
    columns = [table.c.id] + [table.c[name] for name in rows[0] if name != "id"]
    if connection.dialect.name == "postgresql":
        names = ", ".join(column.name for column in columns)
        assignments = ", ".join(f"{column.name} = v.{column.name}" for column in columns[1:])
        connection.exec_driver_sql(
            f"UPDATE {table.name} SET {assignments}"
            f" FROM unnest({_arrays(connection, columns)}) AS v({names})"
            f" WHERE {table.name}.id = v.id",
            _as_arrays(connection, columns, rows))
    else:
        assignments = ", ".join(f"{column.name} = ?" for column in columns[1:])
        connection.exec_driver_sql(
            f"UPDATE {table.name} SET {assignments} WHERE id = ?",
            _as_tuples(connection, columns[1:] + columns[:1], rows))


def _arrays(connection, columns):
    """``%b::type[]`` placeholders, one per column: psycopg sends each as a
    binary array."""
    return ", ".join(f"%b::{column.type.compile(dialect=connection.dialect)}[]"
                     for column in columns)


def _processors(connection, columns):
    """Each column's conversion to what the driver takes (None: as it is)."""
    return [column.type.bind_processor(connection.dialect) or _identity for column in columns]


def _identity(value):
    return value


def _as_arrays(connection, columns, rows):
    return tuple([to_db(row[column.name]) for row in rows]
                 for column, to_db in zip(columns, _processors(connection, columns)))


def _as_tuples(connection, columns, rows):
    pairs = list(zip(columns, _processors(connection, columns)))
    return [tuple(to_db(row[column.name]) for column, to_db in pairs) for row in rows]
