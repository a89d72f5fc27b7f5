"""The WSGI entry point: ``gunicorn wsgi:app`` and ``flask --app wsgi``."""

from vmsapp import create_app

app = create_app()
