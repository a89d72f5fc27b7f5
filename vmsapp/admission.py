"""An agent's ``auth`` below the socket: its NVR found by hostname, its token
checked and its presence claimed, for every agent arriving together in one batch.

One batch, not a lookup's followed by a connect's, and on PostgreSQL one
statement: while a fleet reconnects, every round trip, and every hand-over
from one batch to the next, waits its turn behind thousands of sockets (for
the GIL under threads, for the event loop under gevent), several
milliseconds apiece."""

import functools
from typing import NamedTuple

import sqlalchemy as sa
from flask import current_app

from . import bulk, credentials, fleet, presence
from .batching import by_first_argument, shared_combiner
from .database import autocommit_connection
from .extensions import db
from .models import Nvr, UtcDateTime

INVALID_HOSTNAME = "invalid_hostname"
INVALID_TOKEN = "invalid_token"


class Admission(NamedTuple):
    """What became of one ``auth``. ``nvr`` is its ``fleet.AgentNvr`` (None
    when no NVR has the hostname); ``refused`` is None, ``INVALID_HOSTNAME``
    or ``INVALID_TOKEN``; ``transition`` is the NVR's move online, None when
    refused or when it was online already; ``claim`` is the NVR's claim
    number this admission took (None when refused): a connection of the NVR
    with a lower one is older and gives way to this one."""

    nvr: fleet.AgentNvr | None
    refused: str | None
    transition: presence.NvrTransition | None
    claim: int | None = None


def admit(hostname, token, connection_id, now):
    """Admit the agent of ``hostname`` (any case) with ``token`` (checked in
    ``token`` auth mode): its NVR's presence goes to ``connection_id`` as of
    ``now``, and the NVR goes online if it was offline. The ``Admission``."""
    return shared_combiner("admission", _admit_all, by_first_argument).submit(
        hostname.lower(), token, connection_id, now)


def _admit_all(batch):
    """An ``Admission`` for each ``(lowercased hostname, token, connection_id,
    now)`` of ``batch``, their hostnames distinct, as the app's auth mode asks."""
    return admit_all(batch, check_tokens=current_app.config["VMS_AUTH_MODE"] == "token")


def admit_all(batch, check_tokens):
    """``_admit_all`` with the tokens checked or not, as one transaction (on
    PostgreSQL one statement) of its own, not combined with other batches."""
    if db.engine.dialect.name == "postgresql":
        return _admit_in_one_statement(batch, check_tokens)
    return _admit_in_two_steps(batch, check_tokens)


def _admit_in_two_steps(batch, check_tokens):
    """SQLite: one lookup, then one transaction of the claims that passed, each
    holding only if its NVR still has the hostname, and the token, found. A
    rename meanwhile that changes only the hostname's case refuses the claim
    as well (PostgreSQL's statement admits it); the agent's next try is in."""
    found = fleet.find_agent_nvrs([hostname for hostname, _, _, _ in batch])
    found_by = ("hostname", "token_hash") if check_tokens else ("hostname",)
    admissions = [None] * len(batch)
    claims = []
    for index, ((_, token, connection_id, now), nvr) in enumerate(zip(batch, found)):
        if nvr is None:
            admissions[index] = Admission(None, INVALID_HOSTNAME, None)
        elif check_tokens and not credentials.matches(token, nvr.token_hash):
            admissions[index] = Admission(nvr, INVALID_TOKEN, None)
        else:
            claims.append((index, nvr, {
                "id": nvr.id, "connection_id": connection_id, "last_seen": now,
                **{column: getattr(nvr, column) for column in found_by}}))
    if claims:
        outcomes = presence.claim_all([claim for _, _, claim in claims], unchanged=found_by)
        for (index, nvr, _), (held, claim, transition) in zip(claims, outcomes, strict=True):
            admissions[index] = (Admission(nvr, None, transition, claim) if held
                                 else _refused_meanwhile(nvr, check_tokens))
    return admissions


def _admit_in_one_statement(batch, check_tokens):
    """PostgreSQL: the lookup, the tokens' check and the claims of ``batch`` as
    one statement in autocommit (``_admission_statement``): one round trip,
    where every round trip waits its turn behind the worker's sockets."""
    hostnames, tokens, connections, moments = zip(*batch)
    digests = [credentials.digest(token) if token else None for token in tokens]
    with autocommit_connection() as connection:
        rows = connection.execute(_admission_statement(), {
            **bulk.unnest_values("wanted", hostname=hostnames, digest=digests,
                                 connection_id=connections, at=moments),
            "check_tokens": check_tokens}).all()
    agents = fleet.agent_nvrs_of(rows)
    nvr_rows = {row.id: row for row in rows}  # a row per camera: the NVR's columns repeat
    claimed_rows = [row for row in nvr_rows.values() if row.claimed]
    transitions = presence.claimed_transitions(claimed_rows)
    presence.announce(transitions)
    moved_online = {transition.nvr_id: transition for transition in transitions}
    return [_admission(agents.get(hostname), nvr_rows, moved_online, check_tokens)
            for hostname in hostnames]


def _admission(nvr, nvr_rows, moved_online, check_tokens):
    """The ``Admission`` of one agent whose NVR the statement found (``nvr``,
    or None)."""
    if nvr is None:
        return Admission(None, INVALID_HOSTNAME, None)
    row = nvr_rows[nvr.id]
    if row.claimed:
        return Admission(nvr, None, moved_online.get(nvr.id), row.claim)
    return _refused_meanwhile(nvr, check_tokens)  # or, with tokens checked, a wrong token


def _refused_meanwhile(nvr, check_tokens):
    """The ``Admission`` of an agent whose ``nvr`` had its token replaced, or
    was renamed or deleted, between the lookup and the claim: the agent's
    next try gets the answer that holds then."""
    if check_tokens:
        return Admission(nvr, INVALID_TOKEN, None)
    return Admission(None, INVALID_HOSTNAME, None)


@functools.cache
def _admission_statement():
    """PostgreSQL, built once (as ``presence``'s moves): each wanted agent's
    NVR looked up by lowercased hostname, its token's digest compared with
    the stored one, and the NVRs that pass claimed (``presence.claiming``),
    the hostname and token checked again on each row once it is locked. Its
    rows are ``fleet.agent_rows``, one per camera, with ``claimed`` and the
    claim's columns (the claim's hostname and name, as they are now, and the
    claim number it took).

    The digests are compared as the API keys' are (``credentials.role_of``):
    a secret's SHA-256 reveals nothing of the secret, so the comparison need
    not take constant time."""
    nvrs = Nvr.__table__
    wanted = sa.select(bulk.unnest_table("wanted", hostname=sa.String, digest=sa.String,
                                         connection_id=sa.String, at=UtcDateTime())
                       ).cte("wanted")
    claims = (sa.select(nvrs.c.id.label("nvr_id"), wanted.c.hostname, wanted.c.digest,
                        wanted.c.connection_id, wanted.c.at)
              .select_from(wanted.join(nvrs, _found_by(wanted)))
              .cte("claims"))
    check_tokens = sa.bindparam("check_tokens", type_=sa.Boolean)
    claimed = presence.claiming(
        claims, _found_by(claims),
        sa.or_(~check_tokens, sa.func.coalesce(nvrs.c.token_hash == claims.c.digest, False))
    ).cte("claimed")
    found = wanted.join(nvrs, _found_by(wanted)).outerjoin(claimed, claimed.c.id == nvrs.c.id)
    return (fleet.agent_rows(found, wanted.c.hostname,
                             hostname=sa.func.coalesce(claimed.c.hostname, nvrs.c.hostname),
                             name=sa.func.coalesce(claimed.c.name, nvrs.c.name))
            .add_columns(claimed.c.id.is_not(None).label("claimed"), claimed.c.at,
                         claimed.c.status_version, claimed.c.last_seen,
                         claimed.c.was_offline, claimed.c.claim, claimed.c.camera_ids))


def _found_by(wanted):
    """An NVR row is the one ``wanted`` (with a lowercased ``hostname``) asks for."""
    return sa.func.lower(Nvr.__table__.c.hostname) == wanted.c.hostname
