"""/api/stats and /healthz."""

import logging

import sqlalchemy as sa
from flask_smorest import Blueprint
from sqlalchemy.exc import SQLAlchemyError

from .. import fleet
from ..errors import ApiError
from ..extensions import db
from ..realtime.bus import current_bus
from ..schemas import HealthSchema, StatsSchema

log = logging.getLogger(__name__)

blp = Blueprint("system", __name__, description="Service state")


@blp.route("/api/stats")
@blp.response(200, StatsSchema)
def stats():
    """Live connections (across every worker the bus reaches) and fleet counts."""
    return {**current_bus().stats(), **fleet.counts()}


@blp.route("/healthz")
@blp.response(200, HealthSchema)
def healthz():
    """200 when the database answers, 503 otherwise."""
    try:
        db.session.execute(sa.text("SELECT 1"))
    except SQLAlchemyError as error:
        db.session.rollback()
        log.error("health check: database unavailable: %s", error)
        raise ApiError(503, "The database is not answering.") from None
    return {"status": "ok"}
