"""The dashboard page: ``/`` and its static files, plus the one fact the page
needs before it has a key (``/config.json``: is a key needed at all?)."""

import re

from flask import Blueprint, current_app, request

bp = Blueprint("web", __name__)

# Pages and files this module answers for; only these get the page headers.
PAGE_PATHS = ("/", "/config.json")
STATIC_PREFIX = "/static/"
# A Host header is the client's to write: only a plain host[:port] goes into the CSP.
PLAIN_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")


@bp.get("/")
def index():
    """The dashboard: one static page that talks to ``/ws`` and the REST API."""
    return current_app.send_static_file("index.html")


@bp.get("/config.json")
def config():
    """What the page must know before it can ask for a key. Never anything secret."""
    return {"auth_mode": current_app.config["VMS_AUTH_MODE"]}


@bp.after_app_request
def page_headers(response):
    if request.path not in PAGE_PATHS and not request.path.startswith(STATIC_PREFIX):
        return response
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = content_security_policy(request.host)
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    # Unversioned file names: revalidate every time (ETag answers 304), so a
    # deploy reaches every open wall screen on its next reload. The auth mode
    # may change with any restart.
    response.headers["Cache-Control"] = "no-store" if request.path == "/config.json" else "no-cache"
    return response


def content_security_policy(host):
    """Only this origin, for scripts, styles, images and connections. ``'self'``
    covers ws(s) to the same host in CSP 3, but older browsers need it spelt out."""
    sockets = f" ws://{host} wss://{host}" if PLAIN_HOST.match(host) else ""
    return ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
            f"connect-src 'self'{sockets}; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'")
