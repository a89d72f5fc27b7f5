"""/api/cameras against a live server: CRUD, lists and pushes (SPEC §3–§5)."""

import pytest
from support import CAMERA_FIELDS, ISO_UTC, dashboard, error_of, nvr_agent, wait_until


def camera(server, camera_id):
    response = server.api("GET", f"/api/cameras/{camera_id}")
    assert response.status_code == 200, response.text
    return response.json()


def cameras_of(server, nvr_id, query=""):
    response = server.api("GET", f"/api/cameras?nvr_id={nvr_id}&{query}")
    assert response.status_code == 200, response.text
    return response.json()


def deleted_nvr_id(server):
    nvr = server.create_nvr()
    server.api("DELETE", f"/api/nvrs/{nvr['id']}")
    return nvr["id"]


# ---- Create ---------------------------------------------------------------------------

def test_it_creates_a_camera_with_every_field(server):
    nvr = server.create_nvr()

    response = server.api("POST", "/api/cameras",
                          json={"nvr_id": nvr["id"], "name": "Gate", "channel": 3})

    assert response.status_code == 201, response.text
    created = response.json()
    assert set(created) == CAMERA_FIELDS
    assert (created["nvr_id"], created["name"], created["channel"]) == (nvr["id"], "Gate", 3)
    assert ISO_UTC.match(created["created_at"]) and ISO_UTC.match(created["updated_at"])
    assert camera(server, created["id"]) == created


def test_it_starts_a_camera_on_an_offline_nvr_offline(server):
    nvr = server.create_nvr()

    assert server.create_camera(nvr["id"], channel=1)["status"] == "offline"


def test_it_starts_a_camera_on_an_online_nvr_online(server):
    nvr = server.create_nvr()
    agent, _ = nvr_agent(server, nvr["hostname"])
    try:
        created = server.create_camera(nvr["id"], channel=1)
        assert created["status"] == "online"
        assert camera(server, created["id"])["status"] == "online"
    finally:
        agent.close()
    # ... and goes offline with its NVR.
    wait_until(lambda: camera(server, created["id"])["status"] == "offline", message="offline")


def test_it_leaves_the_channel_null_when_not_given(server):
    nvr = server.create_nvr()

    assert server.create_camera(nvr["id"])["channel"] is None


@pytest.mark.parametrize("nvr_id", ["deleted", 2**31 - 1, 2**40, 0, -5])
def test_it_refuses_an_unknown_nvr_id_naming_it(server, nvr_id):
    if nvr_id == "deleted":
        nvr_id = deleted_nvr_id(server)

    response = server.api("POST", "/api/cameras", json={"nvr_id": nvr_id, "name": "Orphan"})

    assert "nvr_id" in error_of(response, 422)["message"]


@pytest.mark.parametrize("body, field", [
    ({"name": "No NVR"}, "nvr_id"),
    ({"nvr_id": None, "name": "C"}, "nvr_id"),
    ({"nvr_id": "1", "name": "C"}, "nvr_id"),
    ({"nvr_id": 1.5, "name": "C"}, "nvr_id"),
    ({"nvr_id": "NVR", "name": None}, "name"),
    ({"nvr_id": "NVR"}, "name"),
    ({"nvr_id": "NVR", "name": "  "}, "name"),
    ({"nvr_id": "NVR", "name": "nul\u0000"}, "name"),
    ({"nvr_id": "NVR", "name": "\udfff"}, "name"),
    ({"nvr_id": "NVR", "name": "C", "channel": "2"}, "channel"),
    ({"nvr_id": "NVR", "name": "C", "channel": 2.5}, "channel"),
    ({"nvr_id": "NVR", "name": "C", "channel": -1}, "channel"),
    ({"nvr_id": "NVR", "name": "C", "status": "online"}, "status"),
    ({"nvr_id": "NVR", "name": "C", "zoom": 3}, "zoom"),
])
def test_it_refuses_an_invalid_field_naming_it(server, body, field):
    nvr = server.create_nvr()
    body = {k: nvr["id"] if v == "NVR" else v for k, v in body.items()}

    response = server.api("POST", "/api/cameras", json=body)

    assert field in error_of(response, 422)["message"]
    assert cameras_of(server, nvr["id"])["total"] == 0


# ---- Channels ------------------------------------------------------------------------------

def test_it_refuses_a_channel_already_used_on_the_nvr(server):
    nvr = server.create_nvr()
    server.create_camera(nvr["id"], channel=4)

    response = server.api("POST", "/api/cameras",
                          json={"nvr_id": nvr["id"], "name": "Twin", "channel": 4})

    assert "channel" in error_of(response, 409)["message"]
    assert cameras_of(server, nvr["id"])["total"] == 1


def test_it_allows_the_same_channel_on_another_nvr(server):
    first, second = server.create_nvr(), server.create_nvr()
    server.create_camera(first["id"], channel=1)

    assert server.create_camera(second["id"], channel=1)["channel"] == 1


def test_it_allows_any_number_of_cameras_without_a_channel(server):
    nvr = server.create_nvr()

    created = [server.create_camera(nvr["id"], channel=None) for _ in range(3)]

    assert [c["channel"] for c in created] == [None] * 3
    assert cameras_of(server, nvr["id"])["total"] == 3


def test_it_refuses_to_patch_a_channel_already_used_on_the_nvr(server):
    nvr = server.create_nvr()
    server.create_camera(nvr["id"], channel=1)
    moving = server.create_camera(nvr["id"], channel=2)

    response = server.api("PATCH", f"/api/cameras/{moving['id']}", json={"channel": 1})

    assert "channel" in error_of(response, 409)["message"]
    assert camera(server, moving["id"])["channel"] == 2


@pytest.mark.parametrize("channel", [2, 7, None])
def test_it_patches_a_channel_to_its_own_a_free_one_or_none(server, channel):
    nvr = server.create_nvr()
    server.create_camera(nvr["id"], channel=None)
    moving = server.create_camera(nvr["id"], channel=2)

    response = server.api("PATCH", f"/api/cameras/{moving['id']}", json={"channel": channel})

    assert response.status_code == 200, response.text
    assert camera(server, moving["id"])["channel"] == channel


# ---- Read, update, delete --------------------------------------------------------------------

def test_it_patches_the_name(server):
    nvr = server.create_nvr()
    created = server.create_camera(nvr["id"], channel=1)

    response = server.api("PATCH", f"/api/cameras/{created['id']}", json={"name": "Back door"})

    assert response.status_code == 200, response.text
    stored = camera(server, created["id"])
    assert stored["name"] == "Back door"
    same = CAMERA_FIELDS - {"name", "updated_at"}
    assert {k: stored[k] for k in same} == {k: created[k] for k in same}


@pytest.mark.parametrize("body, field", [
    ({"status": "online"}, "status"),
    ({"nvr_id": "OTHER"}, "nvr_id"),
    ({"name": ""}, "name"),
    ({"name": None}, "name"),
    ({"channel": "one"}, "channel"),
])
def test_it_refuses_an_invalid_patch_and_changes_nothing(server, body, field):
    nvr, other = server.create_nvr(), server.create_nvr()
    created = server.create_camera(nvr["id"], channel=1)
    body = {k: other["id"] if v == "OTHER" else v for k, v in body.items()}

    # A valid change beside the invalid one must not stick either.
    response = server.api("PATCH", f"/api/cameras/{created['id']}", json={"name": "X", **body})

    assert field in error_of(response, 422)["message"]
    assert camera(server, created["id"]) == created


def test_it_deletes_a_camera(server):
    nvr = server.create_nvr()
    created = server.create_camera(nvr["id"], channel=1)

    response = server.api("DELETE", f"/api/cameras/{created['id']}")

    assert response.status_code == 204
    assert response.content == b""
    for method in ("GET", "PATCH", "DELETE"):
        error_of(server.api(method, f"/api/cameras/{created['id']}", json={"name": "x"}), 404)
    assert [c["id"] for c in server.nvr(nvr["id"])["cameras"]] == []


# ---- Lists -----------------------------------------------------------------------------------

def test_it_lists_the_cameras_of_one_nvr(server):
    nvr, other = server.create_nvr(cameras=3), server.create_nvr(cameras=1)

    page = cameras_of(server, nvr["id"])

    assert page["total"] == 3
    assert page["items"] == [camera(server, c["id"]) for c in nvr["cameras"]]
    assert other["cameras"][0]["id"] not in {c["id"] for c in page["items"]}


def test_it_filters_cameras_by_status(server):
    online_nvr, offline_nvr = server.create_nvr(cameras=1), server.create_nvr(cameras=1)
    agent, _ = nvr_agent(server, online_nvr["hostname"])
    try:
        online_id = online_nvr["cameras"][0]["id"]
        offline_id = offline_nvr["cameras"][0]["id"]
        online = server.api("GET", "/api/cameras?status=online&limit=1000").json()
        offline = server.api("GET", "/api/cameras?status=offline&limit=1000").json()
        mine_online = cameras_of(server, online_nvr["id"], "status=online")
        mine_offline = cameras_of(server, online_nvr["id"], "status=offline")
    finally:
        agent.close()

    assert all(c["status"] == "online" for c in online["items"])
    assert all(c["status"] == "offline" for c in offline["items"])
    assert online_id in {c["id"] for c in online["items"]}
    assert offline_id not in {c["id"] for c in online["items"]}
    assert [c["id"] for c in mine_online["items"]] == [online_id]
    assert mine_offline == {"items": [], "total": 0}


def test_it_paginates_the_cameras(server):
    nvr = server.create_nvr(cameras=5)
    ids = [c["id"] for c in nvr["cameras"]]

    pages = [cameras_of(server, nvr["id"], f"limit=2&offset={offset}") for offset in (0, 2, 4)]

    assert [[c["id"] for c in p["items"]] for p in pages] == [ids[:2], ids[2:4], ids[4:]]
    assert {p["total"] for p in pages} == {5}


@pytest.mark.parametrize("param, value", [
    ("nvr_id", "abc"), ("status", "broken"), ("limit", "0"), ("limit", "1001"),
    ("limit", "many"), ("offset", "-3"),
])
def test_it_refuses_a_bad_query_parameter_naming_it(server, param, value):
    response = server.api("GET", f"/api/cameras?{param}={value}")

    assert param in error_of(response, 422)["message"]


def test_it_lists_nothing_for_an_unknown_nvr(server):
    assert cameras_of(server, deleted_nvr_id(server)) == {"items": [], "total": 0}


# ---- Pushes to dashboards --------------------------------------------------------------------

def test_it_pushes_camera_creates_updates_and_deletes_to_dashboards(server):
    nvr = server.create_nvr()
    board = dashboard(server)
    try:
        created = server.create_camera(nvr["id"], channel=9)
        pushed = board.expect(lambda m: m.get("type") == "camera_created"
                              and m["camera"]["id"] == created["id"], what="camera_created")
        assert pushed == {"type": "camera_created", "camera": created}

        patched = server.api("PATCH", f"/api/cameras/{created['id']}", json={"name": "Dock"}).json()
        pushed = board.expect(lambda m: m.get("type") == "camera_updated"
                              and m["camera"]["id"] == created["id"], what="camera_updated")
        assert pushed == {"type": "camera_updated", "camera": patched}

        assert server.api("DELETE", f"/api/cameras/{created['id']}").status_code == 204
        pushed = board.expect_type("camera_deleted", camera_id=created["id"])
        assert pushed == {"type": "camera_deleted", "camera_id": created["id"], "nvr_id": nvr["id"]}
    finally:
        board.close()
