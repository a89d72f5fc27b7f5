"""NVR tokens and API keys: generated here, stored as SHA-256, compared as digests.

Both are 32 random bytes, so a plain SHA-256 is as hard to reverse as the
secret is to guess; a slow password hash would only slow every request. For
the same reason a digest's comparison leaks nothing worth having: ``matches``
takes constant time all the same, and the database compares digests where
that saves a round trip (an API key's lookup, and agents' tokens on
PostgreSQL: ``admission``)."""

import hashlib
import hmac
import secrets

import sqlalchemy as sa

from .extensions import db
from .models import ADMIN, ApiKey

TOKEN_BYTES = 32
KEY_PREFIX = "vms_"


def new_secret():
    """A fresh URL-safe secret of 32 random bytes that never starts with "-":
    one in 64 would, and a command line then takes it for an option
    (``nvr_sim HOST --token -x…`` fails with "expected one argument")."""
    while True:
        secret = secrets.token_urlsafe(TOKEN_BYTES)
        if not secret.startswith("-"):
            return secret


def digest(secret):
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def matches(secret, stored_digest):
    """Whether ``secret`` hashes to ``stored_digest``, in constant time."""
    if not secret or not stored_digest:
        return False
    return hmac.compare_digest(digest(secret), stored_digest)


def issue_nvr_token(nvr):
    """Give ``nvr`` a new token (the caller commits); returns the token, shown once."""
    nvr.token = new_secret()
    nvr.token_hash = digest(nvr.token)
    return nvr.token


def create_api_key(name, role, now):
    """Store a new API key (the caller commits); returns ``(key, row)``."""
    key = KEY_PREFIX + new_secret()
    row = ApiKey(name=name, role=role, key_hash=digest(key), prefix=key[:12], created_at=now)
    db.session.add(row)
    return key, row


def role_of(key, admin_key=None):
    """The role an API key grants (``admin`` or ``viewer``), or None."""
    if not key or len(key) > 512:
        return None
    if admin_key and hmac.compare_digest(digest(key), digest(admin_key)):
        return ADMIN
    # Looked up by digest: the unique index answers, the key is never compared as text.
    return db.session.scalar(sa.select(ApiKey.role).where(
        ApiKey.key_hash == digest(key), ApiKey.revoked_at.is_(None)))


def bearer(header):
    """The credential in an ``Authorization: Bearer …`` header, or None."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None
