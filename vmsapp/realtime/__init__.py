"""Real-time presence over /ws: the socket route, the connection registry and the bus."""

from . import bus, registry


def init_app(app):
    """Give the app its registry and bus, and register the /ws route."""
    from .peer import reader_thread, wakeup_event
    from .routes import bp

    options = app.config["SOCK_SERVER_OPTIONS"]
    # Ours, always: the handler waits for the reader and is woken through the event.
    options["thread_class"] = reader_thread
    options["event_class"] = wakeup_event
    connections = registry.Registry()
    app.extensions[registry.EXTENSION_KEY] = connections
    if app.config["REDIS_URL"]:
        from .redis_bus import RedisBus
        app.extensions[bus.EXTENSION_KEY] = RedisBus(connections, app.config["REDIS_URL"],
                                                     app.config["VMS_REDIS_PREFIX"])
    else:
        app.extensions[bus.EXTENSION_KEY] = bus.LocalBus(connections)
    app.register_blueprint(bp)
