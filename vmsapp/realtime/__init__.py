"""Real-time presence over /ws: the socket route, the connection registry and the bus."""

from . import bus, registry


def init_app(app):
    """Give the app its registry and bus, and register the /ws route."""
    from .routes import bp

    connections = registry.Registry()
    app.extensions[registry.EXTENSION_KEY] = connections
    app.extensions[bus.EXTENSION_KEY] = bus.LocalBus(connections)
    app.register_blueprint(bp)
