"""Statements over many rows at once (``bulk``): the same rows on both databases."""

from datetime import timedelta

from rows import make_nvr, nvr_row

from vmsapp import bulk
from vmsapp.clock import now
from vmsapp.extensions import db
from vmsapp.models import Nvr


def test_update_by_id_compares_the_unchanged_columns_and_sets_the_others(ctx):
    """A compare-and-set: only rows still holding the given values of the
    ``unchanged`` columns, NULL included, are set; the compared ones are not."""
    t = now()
    ids = [make_nvr(cameras=0, hostname=f"nvr-{index}")[0] for index in range(4)]
    db.session.get(Nvr, ids[1]).token_hash = "stored"
    db.session.commit()
    rows = [
        {"id": ids[0], "connection_id": "a", "hostname": "nvr-0", "token_hash": None},
        {"id": ids[1], "connection_id": "b", "hostname": "nvr-1", "token_hash": "stored"},
        {"id": ids[2], "connection_id": "c", "hostname": "another", "token_hash": None},
        {"id": ids[3], "connection_id": "d", "hostname": "nvr-3", "token_hash": "stored"},
        {"id": max(ids) + 1, "connection_id": "e", "hostname": "nvr-4", "token_hash": None},
    ]

    with db.engine.begin() as connection:
        bulk.update_by_id(connection, Nvr.__table__, rows,
                          unchanged=("hostname", "token_hash"))

    assert [(nvr_row(nvr_id).connection_id, nvr_row(nvr_id).hostname,
             nvr_row(nvr_id).token_hash) for nvr_id in ids] == [
        ("a", "nvr-0", None), ("b", "nvr-1", "stored"), (None, "nvr-2", None),
        (None, "nvr-3", None)]
    with db.engine.begin() as connection:
        bulk.update_by_id(connection, Nvr.__table__, [{"id": ids[2], "last_seen": t}])
        # With only_later as well: set where both hold.
        bulk.update_by_id(connection, Nvr.__table__, [
            {"id": ids[0], "last_seen": t, "hostname": "nvr-0"},
            {"id": ids[1], "last_seen": t, "hostname": "renamed"},
            {"id": ids[2], "last_seen": t - timedelta(seconds=1), "hostname": "nvr-2"},
            {"id": ids[3], "last_seen": t, "hostname": "nvr-3"},
        ], only_later="last_seen", unchanged=("hostname",))
    assert [nvr_row(nvr_id).last_seen for nvr_id in ids] == [t, None, t, t]


def test_update_by_id_increments_the_named_columns_of_the_rows_it_updates(ctx):
    ids = [make_nvr(cameras=0, hostname=f"nvr-{index}")[0] for index in range(2)]

    with db.engine.begin() as connection:
        for connection_id in ("a", "b"):
            bulk.update_by_id(connection, Nvr.__table__, [
                {"id": ids[0], "connection_id": connection_id, "hostname": "nvr-0"},
                {"id": ids[1], "connection_id": connection_id, "hostname": "renamed"},
            ], unchanged=("hostname",), increment=("claim",))

    assert [(nvr_row(nvr_id).connection_id, nvr_row(nvr_id).claim) for nvr_id in ids] == [
        ("b", 2), (None, 0)]
