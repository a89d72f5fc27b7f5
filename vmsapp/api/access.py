"""Who may call the REST API (SPEC §5): any valid key reads, admin keys write."""

import logging

from flask import current_app, request

from ..credentials import bearer, role_of
from ..errors import ApiError
from ..models import ADMIN
from ..ratelimit import current_limiter

log = logging.getLogger(__name__)

READ_METHODS = {"GET", "HEAD", "OPTIONS"}
PUBLIC_PATHS = {"/api/openapi.json"}


def require_api_key():
    """401 without a valid key, 403 for a viewer writing, 429 after too many failures."""
    config = current_app.config
    if (config["VMS_AUTH_MODE"] != "token" or not request.path.startswith("/api/")
            or request.path in PUBLIC_PATHS):
        return
    limiter = current_limiter()
    if limiter.blocked(request.remote_addr):
        raise ApiError(429, "Too many failed attempts from this address; wait a minute.")
    role = role_of(bearer(request.headers.get("Authorization")), config["VMS_ADMIN_API_KEY"])
    if role is None:
        limiter.failed(request.remote_addr)
        log.warning("REST auth refused from %s: %s %s", request.remote_addr, request.method,
                    request.path)
        raise ApiError(401, "An API key is needed: Authorization: Bearer <key>.")
    if request.method not in READ_METHODS and role != ADMIN:
        raise ApiError(403, "This API key may only read; writing needs an admin key.")
