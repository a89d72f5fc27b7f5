"""Flask commands: ``flask --app wsgi seed-demo``."""

import click
import sqlalchemy as sa

from .clock import now
from .extensions import db
from .models import OFFLINE, Camera, Nvr

DEMO_NVRS = [
    ("Lobby NVR", "nvr-lobby", "10.0.0.11", "Building A, lobby"),
    ("Garage NVR", "nvr-garage", "10.0.0.12", "Building A, car park"),
    ("Warehouse NVR", "nvr-warehouse", "10.0.0.13", "Building B"),
]
CAMERAS_PER_NVR = 4


@click.command("seed-demo")
def seed_demo():
    """Add a few demo NVRs with cameras (existing ones are left alone)."""
    created = now()
    for name, hostname, ip_address, location in DEMO_NVRS:
        nvr = db.session.scalar(sa.select(Nvr).where(sa.func.lower(Nvr.hostname) == hostname))
        if nvr is None:
            nvr = Nvr(name=name, hostname=hostname, ip_address=ip_address, location=location,
                      status=OFFLINE, created_at=created, updated_at=created)
            nvr.cameras = [Camera(name=f"{name.split()[0]} camera {channel}", channel=channel,
                                  status=OFFLINE, created_at=created, updated_at=created)
                           for channel in range(1, CAMERAS_PER_NVR + 1)]
            db.session.add(nvr)
            verb = "created"
        else:
            verb = "exists "
        db.session.flush()
        click.echo(f"{verb} NVR {nvr.id}: {nvr.hostname} with {len(nvr.cameras)} cameras")
    db.session.commit()
    click.echo("Start an agent with: python -m tools.nvr_sim nvr-lobby")


def register_commands(app):
    app.cli.add_command(seed_demo)
