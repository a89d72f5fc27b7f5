"""An agent's auth below the socket: its NVR, its token, its claim, in batches."""

import threading
from datetime import timedelta, timezone

import pytest
import sqlalchemy as sa
from rows import connect, events, make_agent, nvr_row, race
from support import wait_until

from vmsapp import admission, credentials, fleet
from vmsapp.clock import now
from vmsapp.database import autocommit_connection
from vmsapp.extensions import db
from vmsapp.models import Nvr


def test_agents_admitted_together_each_get_their_own_nvr_and_transition(app):
    with app.app_context():
        agents = [make_agent(cameras=index % 3, hostname=f"Agent-{index}") for index in range(12)]
    results = {}
    # Each its own moment: a batch must not give one connect another's time.
    moments = [now() + timedelta(seconds=index) for index in range(len(agents))]

    def admit(index):
        # Any case of the hostname finds its NVR.
        hostname = f"AGENT-{index}" if index % 2 else f"agent-{index}"
        results[index] = admission.admit(hostname, agents[index][2], f"c{index}", moments[index])

    assert race(app, len(agents), admit) == []
    with app.app_context():
        for index, (nvr_id, camera_ids, _) in enumerate(agents):
            nvr, refused, transition, _ = results[index]
            assert (nvr.id, nvr.hostname, refused) == (nvr_id, f"Agent-{index}", None)
            assert [camera.id for camera in nvr.cameras] == camera_ids
            assert (transition.nvr_id, transition.camera_ids, transition.at) == (
                nvr_id, camera_ids, moments[index])
            assert transition.at.tzinfo is timezone.utc  # as the clock gives it
            row = nvr_row(nvr_id)
            assert (row.status, row.status_version, row.connection_id, row.last_seen) == (
                "online", 1, f"c{index}", moments[index])
            assert [(e.camera_id, e.to_status, e.at) for e in events(nvr_id)] == [
                (None, "online", moments[index])] + [
                (c, "online", moments[index]) for c in camera_ids]


def test_a_batch_of_admissions_refuses_only_the_agents_that_fail(ctx, listener):
    """One batch, as the combiner hands it over: an unknown hostname and a
    wrong or missing token are refused and change nothing, beside two
    agents admitted, one of them online already."""
    admitted, camera_ids, token = make_agent(cameras=2, hostname="Admitted")
    online, _, online_token = make_agent(cameras=1, hostname="online")
    wrong, _, _ = make_agent(cameras=1, hostname="wrong")
    missing, _, _ = make_agent(cameras=1, hostname="missing")
    connect(online, "earlier", now())
    listener()
    t = now()
    batch = [("admitted", token, "c1", t), ("no-such-nvr", token, "c2", t),
             ("wrong", token, "c3", t), ("missing", None, "c4", t),
             ("online", online_token, "c5", t)]

    results = admission._admit_all(batch)

    assert [(nvr and nvr.id, refused) for nvr, refused, _, _ in results] == [
        (admitted, None), (None, admission.INVALID_HOSTNAME), (wrong, admission.INVALID_TOKEN),
        (missing, admission.INVALID_TOKEN), (online, None)]
    assert results[0].transition.camera_ids == camera_ids
    assert results[4].transition is None  # online already: the claim alone
    assert [m["nvr_id"] for m in listener()] == [admitted]
    for nvr_id in (wrong, missing):
        row = nvr_row(nvr_id)
        assert (row.status, row.connection_id, events(nvr_id)) == ("offline", None, [])
    assert (nvr_row(online).connection_id, nvr_row(online).status_version) == ("c5", 1)


def test_admissions_of_one_nvr_arriving_together_make_one_transition(app):
    with app.app_context():
        nvr_id, camera_ids, token = make_agent(cameras=2)
    results = []

    def admit(index):
        results.append(admission.admit("NVR-A" if index % 2 else "nvr-a", token, f"c{index}",
                                       now()))

    assert race(app, 8, admit) == []
    assert [refused for _, refused, _, _ in results] == [None] * 8
    assert len([transition for _, _, transition, _ in results if transition is not None]) == 1
    with app.app_context():
        row = nvr_row(nvr_id)
        assert (row.status, row.status_version) == ("online", 1)
        assert row.connection_id in {f"c{i}" for i in range(8)}
        assert len(events(nvr_id)) == 1 + len(camera_ids)


def test_each_admission_of_an_nvr_takes_the_next_claim_number_and_a_refusal_none(ctx):
    nvr_id, _, token = make_agent()
    other_id, _, other_token = make_agent(hostname="nvr-b")

    claims = [admission.admit("nvr-a", token, f"c{index}", now()).claim for index in range(3)]
    refused = admission.admit("nvr-a", "not-its-token", "c3", now())
    other = admission.admit("nvr-b", other_token, "c4", now())

    assert claims == [1, 2, 3]
    assert (refused.refused, refused.claim) == (admission.INVALID_TOKEN, None)
    assert other.claim == 1  # each NVR counts its own
    assert (nvr_row(nvr_id).claim, nvr_row(nvr_id).connection_id) == (3, "c2")


def test_admissions_arriving_together_take_distinct_claims_and_the_highest_holds(app):
    """Whatever order the batches and workers commit in, the connection the
    NVR's row holds is the one of the highest claim: the one newest wins keeps."""
    with app.app_context():
        nvr_id, _, token = make_agent()
    claims = {}

    def admit(index):
        claims[f"c{index}"] = admission.admit("nvr-a", token, f"c{index}", now()).claim

    assert race(app, 8, admit) == []
    assert sorted(claims.values()) == list(range(1, 9))
    with app.app_context():
        row = nvr_row(nvr_id)
        assert (row.claim, claims[row.connection_id]) == (8, 8)


def test_an_nvr_without_a_token_admits_no_agent_in_token_mode(ctx):
    nvr_id, _, token = make_agent()
    db.session.get(Nvr, nvr_id).token_hash = None  # as migrated NVRs may have
    db.session.commit()

    results = [admission.admit("nvr-a", presented, "c1", now()) for presented in (token, None)]

    assert [(nvr.id, refused) for nvr, refused, _, _ in results] == [
        (nvr_id, admission.INVALID_TOKEN)] * 2
    assert (nvr_row(nvr_id).status, events(nvr_id)) == ("offline", [])


def test_the_open_auth_mode_admits_an_agent_whatever_its_token(ctx):
    ctx.config["VMS_AUTH_MODE"] = "open"
    nvr_id, _, _ = make_agent()

    results = [admission.admit("nvr-a", presented, f"c{index}", now())
               for index, presented in enumerate((None, "not-its-token"))]

    assert [(nvr.id, refused) for nvr, refused, _, _ in results] == [(nvr_id, None)] * 2
    assert results[0].transition.nvr_id == nvr_id
    assert nvr_row(nvr_id).connection_id == "c1"


# What an admin may do to an NVR while its agent's auth is under way.
CHANGES = {
    "token replaced": lambda nvr_id: sa.update(Nvr).where(Nvr.id == nvr_id).values(
        token_hash=credentials.digest("a-new-token")),
    "renamed": lambda nvr_id: sa.update(Nvr).where(Nvr.id == nvr_id).values(hostname="nvr-b"),
    "deleted": lambda nvr_id: sa.delete(Nvr).where(Nvr.id == nvr_id),
}


@pytest.mark.parametrize(("change", "check_tokens", "refused"), [
    ("token replaced", True, admission.INVALID_TOKEN),
    ("renamed", True, admission.INVALID_TOKEN),
    ("deleted", True, admission.INVALID_TOKEN),
    ("renamed", False, admission.INVALID_HOSTNAME),
    ("deleted", False, admission.INVALID_HOSTNAME),
])
def test_an_nvr_changed_after_its_lookup_is_not_claimed(
        ctx, listener, monkeypatch, change, check_tokens, refused):
    """The change lands after the agent's NVR was found and its token checked,
    before the claim: the claim must see it and not hold."""
    nvr_id, _, token = make_agent(cameras=2)
    listener()

    [(_, outcome, transition, _)] = _admitted_across(
        ctx, monkeypatch, CHANGES[change](nvr_id), [("nvr-a", token, "c1", now())], check_tokens)

    assert (outcome, transition) == (refused, None)
    row = nvr_row(nvr_id)
    assert row is None or (row.status, row.connection_id, row.last_seen) == (
        "offline", None, None)
    assert events(nvr_id) == [] and listener() == []


def test_a_replaced_token_still_admits_in_the_open_auth_mode(ctx, monkeypatch):
    """Only what the auth mode checks is compared: the claim keeps the new token."""
    nvr_id, _, token = make_agent(cameras=1)

    [(nvr, outcome, transition, _)] = _admitted_across(
        ctx, monkeypatch, CHANGES["token replaced"](nvr_id), [("nvr-a", token, "c1", now())],
        check_tokens=False)

    assert (nvr.id, outcome, transition.nvr_id) == (nvr_id, None, nvr_id)
    row = nvr_row(nvr_id)
    assert (row.connection_id, row.token_hash) == ("c1", credentials.digest("a-new-token"))


def _admitted_across(app, monkeypatch, change, batch, check_tokens):
    """``admission.admit_all(batch)`` with ``change`` committed between its
    lookup and its claim, as another worker or an admin's request would.

    SQLite looks the NVRs up first and claims them in a transaction after:
    ``change`` is committed as the lookup returns. PostgreSQL does both in
    one statement, which locks each row as it claims it: ``change`` is made
    in a transaction that holds the row's lock already, and committed once
    the admission waits for it."""
    if db.engine.dialect.name == "sqlite":
        find = fleet.find_agent_nvrs

        def find_then_change(hostnames):
            found = find(hostnames)
            with db.engine.begin() as other:
                other.execute(change)
            return found

        monkeypatch.setattr(fleet, "find_agent_nvrs", find_then_change)
        return admission.admit_all(batch, check_tokens)
    outcome, errors = [], []

    def admit():
        with app.app_context():
            try:
                outcome.extend(admission.admit_all(batch, check_tokens))
            except Exception as error:  # raised again below: a thread cannot fail the test
                errors.append(error)
            finally:
                db.session.remove()

    with db.engine.connect() as other:
        other.execute(sa.select(Nvr.id).with_for_update())  # every NVR's row
        other.execute(change)
        admitting = threading.Thread(target=admit)
        admitting.start()
        wait_until(lambda: _waiting_for_a_lock() or not admitting.is_alive(),
                   message="the admission waiting for the row")
        other.commit()
    admitting.join()
    if errors:
        raise errors[0]
    return outcome


def _waiting_for_a_lock():
    """Whether another session of this database waits for a lock (PostgreSQL).
    Read outside any transaction: one would see the activity as it first read it."""
    with autocommit_connection() as connection:
        return connection.scalar(sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'")) > 0
