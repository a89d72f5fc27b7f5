"""Flask commands: demo data and API keys (``flask --app wsgi --help``)."""

import os

import click
import sqlalchemy as sa

from . import credentials
from .clock import isoformat, now
from .extensions import db
from .fleet import find_nvr_by_hostname
from .models import OFFLINE, ROLES, ApiKey, Camera, Nvr

DEMO_NVRS = [
    ("Lobby NVR", "nvr-lobby", "10.0.0.11", "Building A, lobby"),
    ("Garage NVR", "nvr-garage", "10.0.0.12", "Building A, car park"),
    ("Warehouse NVR", "nvr-warehouse", "10.0.0.13", "Building B"),
]
CAMERAS_PER_NVR = 4
DEMO_KEY_NAME = "demo"


@click.command("seed-demo")
def seed_demo():
    """Add demo NVRs with cameras, and print fresh tokens for them and a demo admin key.

    Safe to run again: existing demo NVRs are kept, their tokens replaced, and the
    previous demo key revoked."""
    t = now()
    tokens = {}
    for name, hostname, ip_address, location in DEMO_NVRS:
        nvr = find_nvr_by_hostname(hostname)
        if nvr is None:
            nvr = Nvr(name=name, hostname=hostname, ip_address=ip_address, location=location,
                      status=OFFLINE, created_at=t, updated_at=t)
            nvr.cameras = [Camera(name=f"{name.split()[0]} camera {channel}", channel=channel,
                                  status=OFFLINE, created_at=t, updated_at=t)
                           for channel in range(1, CAMERAS_PER_NVR + 1)]
            db.session.add(nvr)
        tokens[hostname] = credentials.issue_nvr_token(nvr)
    db.session.execute(sa.update(ApiKey).where(ApiKey.name == DEMO_KEY_NAME,
                                               ApiKey.revoked_at.is_(None)).values(revoked_at=t))
    key, _ = credentials.create_api_key(DEMO_KEY_NAME, "admin", t)
    db.session.commit()
    click.echo("Demo NVRs (fresh tokens; agents using older ones must be restarted):")
    for hostname, token in tokens.items():
        click.echo(f"  python -m tools.nvr_sim {hostname} --token {token}")
    click.echo("Dashboard (the page keeps the key and takes it out of the address bar):")
    click.echo(f"  http://localhost:{os.environ.get('PORT', '3000')}/#key={key}")
    click.echo(f"  python -m tools.dashboard_sim --token {key}")
    click.echo(f"Demo admin API key (REST: Authorization: Bearer …):\n{key}")


@click.command("create-api-key")
@click.option("--role", type=click.Choice(ROLES), required=True,
              help="admin reads and writes; viewer reads and watches dashboards.")
@click.option("--name", required=True, help="Who or what the key is for.")
def create_api_key(role, name):
    """Create an API key; it is printed alone on the last line, this once."""
    key, row = credentials.create_api_key(name, role, now())
    db.session.commit()
    click.echo(f"Created {role} key {row.id} ({name}). Store it now: it is not shown again.")
    click.echo(key)


@click.command("list-api-keys")
def list_api_keys():
    """List API keys (never the keys themselves, only their first characters)."""
    rows = db.session.scalars(sa.select(ApiKey).order_by(ApiKey.id)).all()
    if not rows:
        click.echo("No API keys.")
    for row in rows:
        state = f"revoked {isoformat(row.revoked_at)}" if row.revoked_at else "active"
        click.echo(f"{row.id:>5}  {row.role:<6}  {row.prefix}…  {state:<32}  {row.name}")


@click.command("revoke-api-key")
@click.argument("key_id", type=int)
def revoke_api_key(key_id):
    """Revoke an API key by its id (see list-api-keys); it stops working at once."""
    row = db.session.get(ApiKey, key_id)
    if row is None:
        raise click.ClickException(f"No API key with id {key_id}.")
    if row.revoked_at is None:
        row.revoked_at = now()
        db.session.commit()
    click.echo(f"Revoked key {key_id} ({row.name}).")


def register_commands(app):
    for command in (seed_demo, create_api_key, list_api_keys, revoke_api_key):
        app.cli.add_command(command)
