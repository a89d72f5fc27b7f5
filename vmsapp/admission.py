"""An agent's ``auth`` below the socket: its NVR found by hostname, its token
checked and its presence claimed, for every agent arriving together in one batch.

One batch, not a lookup's batch followed by a connect's: under gevent each
batch waits for turns of the event loop, 5-15 ms apiece while a fleet
reconnects, and handing an agent from one batch to the next cost it two more.
An agent's auth waited about half as long at the preset (BENCHMARKS.md)."""

from typing import NamedTuple

from flask import current_app

from . import credentials, fleet, presence
from .batching import shared_combiner

INVALID_HOSTNAME = "invalid_hostname"
INVALID_TOKEN = "invalid_token"


class Admission(NamedTuple):
    """What became of one ``auth``. ``nvr`` is its ``fleet.AgentNvr`` (None
    when no NVR has the hostname); ``refused`` is None, ``INVALID_HOSTNAME``
    or ``INVALID_TOKEN``; ``transition`` is the NVR's move online, None when
    refused or when it was online already."""

    nvr: fleet.AgentNvr | None
    refused: str | None
    transition: presence.NvrTransition | None


def admit(hostname, token, connection_id, now):
    """Admit the agent of ``hostname`` (any case) with ``token`` (checked in
    ``token`` auth mode): its NVR's presence goes to ``connection_id`` as of
    ``now``, as ``presence.connect_all`` gives it. The ``Admission``."""
    return shared_combiner("admission", _admit_all, _by_hostname).submit(
        hostname.lower(), token, connection_id, now)


def _by_hostname(args):
    """One request per NVR in a batch: each claim is a compare-and-set of its own."""
    return args[0]


def _admit_all(batch):
    """An ``Admission`` for each ``(lowercased hostname, token, connection_id,
    now)`` of ``batch``, their hostnames distinct: one lookup, then one
    transaction of the claims that passed."""
    check_tokens = current_app.config["VMS_AUTH_MODE"] == "token"
    found = fleet.find_agent_nvrs([hostname for hostname, _, _, _ in batch])
    admissions = [None] * len(batch)
    claims = []
    for index, ((_, token, connection_id, now), nvr) in enumerate(zip(batch, found)):
        if nvr is None:
            admissions[index] = Admission(None, INVALID_HOSTNAME, None)
        elif check_tokens and not credentials.matches(token, nvr.token_hash):
            admissions[index] = Admission(nvr, INVALID_TOKEN, None)
        else:
            claims.append((index, nvr, (nvr.id, connection_id, now)))
    if claims:
        transitions = presence.connect_all([claim for _, _, claim in claims])
        for (index, nvr, _), transition in zip(claims, transitions, strict=True):
            admissions[index] = Admission(nvr, None, transition)
    return admissions
