"""/api/nvrs: NVR CRUD and status history."""

from flask.views import MethodView
from flask_smorest import Blueprint

from .. import fleet, presence
from ..clock import now
from ..errors import ApiError
from ..schemas import (
    MAX_ID,
    NvrCreatedSchema,
    NvrDetailSchema,
    NvrListArgs,
    NvrPage,
    NvrSchema,
    NvrUpdateSchema,
    NvrWriteSchema,
    PageArgs,
    StatusEventPage,
    TokenSchema,
)

blp = Blueprint("nvrs", __name__, url_prefix="/api/nvrs", description="NVRs")


@blp.route("")
class NvrCollection(MethodView):
    @blp.arguments(NvrListArgs, location="query")
    @blp.response(200, NvrPage)
    def get(self, args):
        """List NVRs, filtered by ``status`` and ``q`` (name or hostname)."""
        items, total = fleet.list_nvrs(**args)
        return {"items": items, "total": total}

    @blp.arguments(NvrWriteSchema)
    @blp.response(201, NvrCreatedSchema)
    def post(self, fields):
        """Register an NVR; it starts offline. The answer carries its token, this once."""
        return fleet.create_nvr(fields, now())


@blp.route(f"/<int(max={MAX_ID}):nvr_id>")
class NvrItem(MethodView):
    @blp.response(200, NvrDetailSchema)
    def get(self, nvr_id):
        """One NVR with its cameras."""
        return fleet.get_nvr(nvr_id)

    @blp.arguments(NvrUpdateSchema)
    @blp.response(200, NvrSchema)
    def patch(self, fields, nvr_id):
        """Change name, hostname, ip_address or location; presence fields are read-only."""
        return fleet.update_nvr(fleet.get_nvr(nvr_id), fields, now())

    @blp.response(204)
    def delete(self, nvr_id):
        """Delete the NVR and its cameras; its live connection is closed with 4004."""
        if not presence.delete_nvr(nvr_id, now()):
            raise ApiError(404, f"No NVR with id {nvr_id}.")


@blp.route(f"/<int(max={MAX_ID}):nvr_id>/events")
@blp.arguments(PageArgs, location="query")
@blp.response(200, StatusEventPage)
def nvr_events(args, nvr_id):
    """Status history of the NVR and its cameras, newest first."""
    fleet.get_nvr(nvr_id)
    items, total = fleet.list_events(nvr_id, **args)
    return {"items": items, "total": total}


@blp.route(f"/<int(max={MAX_ID}):nvr_id>/token", methods=["POST"])
@blp.response(200, TokenSchema)
def replace_token(nvr_id):
    """Issue a new token; the old one stops working and its connection is closed (1008)."""
    return {"token": fleet.replace_nvr_token(fleet.get_nvr(nvr_id))}
