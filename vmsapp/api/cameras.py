"""/api/cameras: camera CRUD."""

from flask.views import MethodView
from flask_smorest import Blueprint

from .. import fleet
from ..clock import now
from ..schemas import (
    MAX_ID,
    CameraCreateSchema,
    CameraListArgs,
    CameraPage,
    CameraSchema,
    CameraUpdateSchema,
)

blp = Blueprint("cameras", __name__, url_prefix="/api/cameras", description="Cameras")


@blp.route("")
class CameraCollection(MethodView):
    @blp.arguments(CameraListArgs, location="query")
    @blp.response(200, CameraPage)
    def get(self, args):
        """List cameras, filtered by ``nvr_id`` and ``status``."""
        items, total = fleet.list_cameras(**args)
        return {"items": items, "total": total}

    @blp.arguments(CameraCreateSchema)
    @blp.response(201, CameraSchema)
    def post(self, fields):
        """Add a camera to an NVR; it starts with the NVR's status."""
        return fleet.create_camera(fields, now())


@blp.route(f"/<int(max={MAX_ID}):camera_id>")
class CameraItem(MethodView):
    @blp.response(200, CameraSchema)
    def get(self, camera_id):
        """One camera."""
        return fleet.get_camera(camera_id)

    @blp.arguments(CameraUpdateSchema)
    @blp.response(200, CameraSchema)
    def patch(self, fields, camera_id):
        """Change name or channel."""
        return fleet.update_camera(fleet.get_camera(camera_id), fields, now())

    @blp.response(204)
    def delete(self, camera_id):
        """Delete the camera."""
        fleet.delete_camera(fleet.get_camera(camera_id))
