"""vmsapp: which NVRs and cameras are alive, second by second."""

from flask import Flask

from config import Config

from . import database, ratelimit, realtime
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
    register_extensions(app)
    register_blueprints(app)
    register_error_handlers(app)
    register_commands(app)
    return app


def register_extensions(app):
    database.init_app(app)
    sock.init_app(app)
    ratelimit.init_app(app)
    realtime.init_app(app)
