"""The JSON REST API: one blueprint per resource."""

import json

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge

from ..errors import ApiError
from ..extensions import api
from . import cameras, nvrs, system
from .access import require_api_key

BODY_METHODS = {"POST", "PUT", "PATCH"}


def require_json_object():
    """400 for a body that is not a JSON object (SPEC §5), before any schema runs."""
    if request.method not in BODY_METHODS or not request.path.startswith("/api/"):
        return
    if request.routing_exception is not None:
        return  # an unknown path or method is a 404 or 405 whatever the body
    raw = read_body()
    if not raw.strip() and request.path.endswith("/token"):
        return  # token rotation takes no body
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nesting too deep to parse
        raise ApiError(400, "The request body is not valid JSON.", "invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.", "invalid_json")
    if not request.is_json:
        raise ApiError(400, "Send the body with Content-Type: application/json.",
                       "invalid_json")


def read_body():
    """The request body, or 413 when it is over ``MAX_CONTENT_LENGTH``."""
    raw = request.get_data(cache=True)
    limit = request.max_content_length
    # Werkzeug cuts a body sent without Content-Length (chunked) at the limit
    # silently instead of refusing it: one byte more means it was over.
    if (request.content_length is None and limit is not None and len(raw) >= limit
            and request.environ["wsgi.input"].read(1)):
        raise RequestEntityTooLarge()
    return raw


def register_blueprints(app):
    """Register the REST resources with flask-smorest (which documents them)."""
    api.init_app(app)
    # Credentials first: an unauthenticated caller learns nothing from body checks.
    app.before_request(require_api_key)
    app.before_request(require_json_object)
    for module in (nvrs, cameras, system):
        api.register_blueprint(module.blp)
