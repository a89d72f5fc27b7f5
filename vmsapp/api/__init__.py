"""The JSON REST API: one blueprint per resource."""

import json

from flask import request

from ..errors import ApiError
from ..extensions import api
from . import cameras, nvrs, system

BODY_METHODS = {"POST", "PUT", "PATCH"}


def require_json_object():
    """400 for a body that is not a JSON object (SPEC §5), before any schema runs."""
    if request.method not in BODY_METHODS or not request.path.startswith("/api/"):
        return
    raw = request.get_data(cache=True)
    if not raw.strip() and request.path.endswith("/token"):
        return  # token rotation takes no body
    try:
        body = json.loads(raw)
    except ValueError:
        raise ApiError(400, "The request body is not valid JSON.", "invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.", "invalid_json")
    if not request.is_json:
        raise ApiError(400, "Send the body with Content-Type: application/json.",
                       "invalid_json")


def register_blueprints(app):
    """Register the REST resources with flask-smorest (which documents them)."""
    api.init_app(app)
    app.before_request(require_json_object)
    for module in (nvrs, cameras, system):
        api.register_blueprint(module.blp)
