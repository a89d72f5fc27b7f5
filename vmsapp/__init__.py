"""vmsapp: which NVRs and cameras are alive, second by second."""

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from config import Config

from . import database, ratelimit, realtime, web
from .api import register_blueprints
from .cli import register_commands
from .errors import register_error_handlers
from .extensions import sock
from .logs import configure_logging


def create_app(test_config=None):
    """Build the app. Starts no threads: see ``vmsapp.runtime``."""
    app = Flask(__name__, instance_relative_config=True)
    app.json.sort_keys = False  # fields in the order the schemas declare them
    app.config.from_mapping(Config().as_dict())
    if test_config:
        app.config.from_mapping(test_config)
    configure_logging(app)
    trust_proxies(app)
    register_extensions(app)
    register_blueprints(app)
    app.register_blueprint(web.bp)  # the dashboard page, /
    register_error_handlers(app)
    register_commands(app)
    return app


def trust_proxies(app):
    """See the client's address and scheme behind VMS_PROXY_HOPS proxies."""
    hops = app.config["VMS_PROXY_HOPS"]
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)


def register_extensions(app):
    database.init_app(app)
    ratelimit.init_app(app)
    sock.init_app(app)
    realtime.init_app(app)
