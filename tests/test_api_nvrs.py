"""/api/nvrs against a live server: CRUD, lists, status history and pushes (SPEC §3–§5)."""

import pytest
from support import CAMERA_FIELDS, ISO_UTC, dashboard, error_of, nvr_agent, unique, wait_until

NVR_FIELDS = {"id", "name", "hostname", "ip_address", "location", "status", "last_seen",
              "status_version", "created_at", "updated_at"}


def nvr_fields(nvr):
    """An NVR as REST and pushes both show it: the §3 fields only."""
    return {name: nvr[name] for name in NVR_FIELDS}


def listing(server, query):
    response = server.api("GET", "/api/nvrs?" + query)
    assert response.status_code == 200, response.text
    return response.json()


# ---- Create, read, update, delete ---------------------------------------------

def test_it_creates_an_nvr_offline_with_every_field(server):
    hostname = unique()
    response = server.api("POST", "/api/nvrs", json={
        "name": "Lobby", "hostname": hostname, "ip_address": "10.0.0.7", "location": "HQ"})

    assert response.status_code == 201, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    nvr = response.json()
    assert NVR_FIELDS <= set(nvr)
    assert isinstance(nvr["id"], int)
    assert (nvr["name"], nvr["hostname"], nvr["ip_address"], nvr["location"]) == (
        "Lobby", hostname, "10.0.0.7", "HQ")
    assert (nvr["status"], nvr["status_version"], nvr["last_seen"]) == ("offline", 0, None)
    assert ISO_UTC.match(nvr["created_at"]) and ISO_UTC.match(nvr["updated_at"])


def test_it_leaves_the_optional_fields_null_when_not_given(server):
    nvr = server.create_nvr()

    assert nvr["ip_address"] is None and nvr["location"] is None


def test_it_returns_one_nvr_with_its_cameras(server):
    created = server.create_nvr(cameras=2)

    response = server.api("GET", f"/api/nvrs/{created['id']}")

    assert response.status_code == 200
    nvr = response.json()
    assert nvr_fields(nvr) == nvr_fields(created)
    assert "token" not in nvr  # shown once, on create, and never again
    assert [c["id"] for c in nvr["cameras"]] == [c["id"] for c in created["cameras"]]
    for camera in nvr["cameras"]:
        assert set(camera) == CAMERA_FIELDS
        assert camera["nvr_id"] == created["id"] and camera["status"] == "offline"


@pytest.mark.parametrize("field, value", [
    ("name", "Renamed"),
    ("hostname", "HOST-{unique}"),
    ("ip_address", "192.168.1.20"),
    ("ip_address", None),
    ("location", "Warehouse"),
    ("location", None),
])
def test_it_patches_a_writable_field(server, field, value):
    nvr = server.create_nvr(ip_address="10.1.1.1", location="HQ")
    if field == "hostname":
        value = value.format(unique=unique())  # unique per run, stable test ids

    response = server.api("PATCH", f"/api/nvrs/{nvr['id']}", json={field: value})

    assert response.status_code == 200, response.text
    assert response.json()[field] == value
    stored = server.nvr(nvr["id"])
    assert stored[field] == value
    untouched = NVR_FIELDS - {field, "updated_at"}
    assert {k: stored[k] for k in untouched} == {k: nvr[k] for k in untouched}


@pytest.mark.parametrize("field, value", [
    ("status", "online"),
    ("last_seen", "2024-01-01T00:00:00Z"),
    ("status_version", 7),
])
def test_it_refuses_to_patch_a_presence_field_and_changes_nothing(server, field, value):
    nvr = server.create_nvr()

    response = server.api("PATCH", f"/api/nvrs/{nvr['id']}",
                          json={"name": "Should not stick", field: value})

    assert field in error_of(response, 422)["message"]
    assert nvr_fields(server.nvr(nvr["id"])) == nvr_fields(nvr)


@pytest.mark.parametrize("field", ["status", "last_seen", "status_version"])
def test_it_refuses_a_presence_field_on_create(server, field):
    hostname = unique()
    body = {"name": "N", "hostname": hostname,
            field: {"status": "online", "last_seen": "2024-01-01T00:00:00Z",
                    "status_version": 3}[field]}

    response = server.api("POST", "/api/nvrs", json=body)

    assert field in error_of(response, 422)["message"]
    assert listing(server, f"q={hostname}")["total"] == 0


def test_it_deletes_an_nvr_with_its_cameras(server):
    nvr = server.create_nvr(cameras=2)

    response = server.api("DELETE", f"/api/nvrs/{nvr['id']}")

    assert response.status_code == 204
    assert response.content == b""
    error_of(server.api("GET", f"/api/nvrs/{nvr['id']}"), 404)
    error_of(server.api("DELETE", f"/api/nvrs/{nvr['id']}"), 404)
    for camera in nvr["cameras"]:
        error_of(server.api("GET", f"/api/cameras/{camera['id']}"), 404)
    cameras = server.api("GET", f"/api/cameras?nvr_id={nvr['id']}").json()
    assert cameras == {"items": [], "total": 0}


# ---- Hostnames and fields -------------------------------------------------------

def test_it_stores_the_hostname_as_given(server):
    hostname = "Mixed-Case." + unique()

    nvr = server.create_nvr(hostname=hostname)

    assert nvr["hostname"] == hostname
    assert server.nvr(nvr["id"])["hostname"] == hostname


@pytest.mark.parametrize("spelling", [str.upper, str.lower, lambda h: h])
def test_it_refuses_a_duplicate_hostname_whatever_its_case(server, spelling):
    hostname = "Dup-" + unique()
    server.create_nvr(hostname=hostname)

    response = server.api("POST", "/api/nvrs",
                          json={"name": "Twin", "hostname": spelling(hostname)})

    assert "hostname" in error_of(response, 409)["message"]
    assert listing(server, f"q={hostname}")["total"] == 1


def test_it_refuses_to_patch_a_hostname_to_one_in_use(server):
    taken = server.create_nvr(hostname="Taken-" + unique())
    nvr = server.create_nvr()

    response = server.api("PATCH", f"/api/nvrs/{nvr['id']}",
                          json={"hostname": taken["hostname"].upper()})

    assert "hostname" in error_of(response, 409)["message"]
    assert server.nvr(nvr["id"])["hostname"] == nvr["hostname"]


def test_it_lets_an_nvr_change_the_case_of_its_own_hostname(server):
    nvr = server.create_nvr()

    response = server.api("PATCH", f"/api/nvrs/{nvr['id']}",
                          json={"hostname": nvr["hostname"].upper()})

    assert response.status_code == 200, response.text
    assert server.nvr(nvr["id"])["hostname"] == nvr["hostname"].upper()


@pytest.mark.parametrize("field", ["name", "hostname"])
@pytest.mark.parametrize("how", ["missing", "null", "blank"])
def test_it_requires_name_and_hostname(server, field, how):
    body = {"name": "N", "hostname": unique()}
    if how == "missing":
        del body[field]
    else:
        body[field] = None if how == "null" else "   "

    response = server.api("POST", "/api/nvrs", json=body)

    assert field in error_of(response, 422)["message"]


@pytest.mark.parametrize("hostname", [
    "host\n", "two words", "-leading-hyphen", "trailing-hyphen-", "a..b", "ünïcode",
    "a" * 254, "x" * 64 + ".example", "tab\there",
])
def test_it_refuses_an_invalid_hostname(server, hostname):
    response = server.api("POST", "/api/nvrs", json={"name": "N", "hostname": hostname})

    assert "hostname" in error_of(response, 422)["message"]


@pytest.mark.parametrize("field", ["name", "location"])
@pytest.mark.parametrize("value", ["nul\u0000inside", "lone \ud800 surrogate"])
def test_it_refuses_text_a_database_cannot_store(server, field, value):
    body = {"name": "N", "hostname": unique(), field: value}

    response = server.api("POST", "/api/nvrs", json=body)

    assert field in error_of(response, 422)["message"]


@pytest.mark.parametrize("field", ["name", "hostname"])
def test_it_refuses_to_patch_name_or_hostname_to_nothing(server, field):
    nvr = server.create_nvr()

    response = server.api("PATCH", f"/api/nvrs/{nvr['id']}", json={field: ""})

    assert field in error_of(response, 422)["message"]
    assert nvr_fields(server.nvr(nvr["id"])) == nvr_fields(nvr)


@pytest.mark.parametrize("ip_address", [
    "999.1.1.1", "10.0.0", "not an ip", "10.0.0.1/24", "2001:db8::g", "fe80::1%eth0", "",
    167772161, ["10.0.0.1"],
])
def test_it_refuses_an_invalid_ip_address(server, ip_address):
    hostname = unique()
    response = server.api("POST", "/api/nvrs",
                          json={"name": "N", "hostname": hostname, "ip_address": ip_address})

    assert "ip_address" in error_of(response, 422)["message"]
    assert listing(server, f"q={hostname}")["total"] == 0


def test_it_refuses_to_patch_an_invalid_ip_address(server):
    nvr = server.create_nvr(ip_address="10.0.0.1")

    response = server.api("PATCH", f"/api/nvrs/{nvr['id']}", json={"ip_address": "10.0.0.256"})

    assert "ip_address" in error_of(response, 422)["message"]
    assert server.nvr(nvr["id"])["ip_address"] == "10.0.0.1"


@pytest.mark.parametrize("ip_address", ["10.20.30.40", "2001:db8::1", "::1", "fe80::1:2:3:4"])
def test_it_accepts_ipv4_and_ipv6_addresses(server, ip_address):
    nvr = server.create_nvr(ip_address=ip_address)

    assert nvr["ip_address"] == ip_address
    assert server.nvr(nvr["id"])["ip_address"] == ip_address


def test_it_refuses_an_unknown_field(server):
    response = server.api("POST", "/api/nvrs", json={"name": "N", "hostname": unique(),
                                                     "colour": "red"})

    assert "colour" in error_of(response, 422)["message"]


# ---- Lists ------------------------------------------------------------------------

def test_it_lists_nvrs_as_items_and_total(server):
    tag = unique("list")
    created = [server.create_nvr(hostname=f"{tag}-{n}") for n in range(3)]

    page = listing(server, f"q={tag}")

    assert page["total"] == 3
    assert [nvr_fields(n) for n in page["items"]] == [nvr_fields(n) for n in created]
    assert all(set(n) == NVR_FIELDS for n in page["items"])


@pytest.mark.parametrize("spelling", [str.upper, str.lower])
def test_it_filters_by_name_or_hostname_case_insensitively(server, spelling):
    tag = unique("Find")
    by_name = server.create_nvr(name=f"Camera room {tag}")
    by_hostname = server.create_nvr(hostname=f"host-{tag}")
    server.create_nvr(name="Someone else")

    page = listing(server, f"q={spelling(tag)}")

    assert page["total"] == 2
    assert {n["id"] for n in page["items"]} == {by_name["id"], by_hostname["id"]}


@pytest.mark.parametrize("q", ["%", "_", "\\"])
def test_it_matches_q_literally(server, q):
    page = listing(server, "q=" + {"%": "%25", "_": "_", "\\": "%5C"}[q] + "&limit=1000")

    assert all(q in n["name"] or q in n["hostname"] for n in page["items"])


def test_it_filters_by_status(server):
    tag = unique("status")
    offline = server.create_nvr(hostname=f"{tag}-off")
    online = server.create_nvr(hostname=f"{tag}-on")
    agent, _ = nvr_agent(server, online["hostname"])
    try:
        wait_until(lambda: server.nvr(online["id"])["status"] == "online", message="online")

        online_page = listing(server, f"q={tag}&status=online")
        offline_page = listing(server, f"q={tag}&status=offline")
    finally:
        agent.close()

    assert [n["id"] for n in online_page["items"]] == [online["id"]]
    assert [n["id"] for n in offline_page["items"]] == [offline["id"]]
    assert online_page["total"] == offline_page["total"] == 1


def test_it_paginates_with_limit_and_offset(server):
    tag = unique("page")
    ids = [server.create_nvr(hostname=f"{tag}-{n}")["id"] for n in range(5)]

    pages = [listing(server, f"q={tag}&limit=2&offset={offset}") for offset in (0, 2, 4, 6)]

    assert [[n["id"] for n in p["items"]] for p in pages] == [ids[0:2], ids[2:4], ids[4:], []]
    assert {p["total"] for p in pages} == {5}


@pytest.mark.parametrize("q", ["%00", "a%00b", "x" * 201])
def test_it_refuses_an_unusable_q_naming_it(server, q):
    response = server.api("GET", f"/api/nvrs?q={q}")

    assert "q" in error_of(response, 422)["message"]


def test_it_accepts_the_largest_limit(server):
    assert "items" in listing(server, "limit=1000")


@pytest.mark.parametrize("param, value", [
    ("limit", "1001"), ("limit", "0"), ("limit", "-1"), ("limit", "ten"), ("limit", "1.5"),
    ("limit", ""), ("offset", "-1"), ("offset", "x"), ("status", "sleeping"),
])
def test_it_refuses_a_bad_query_parameter_naming_it(server, param, value):
    response = server.api("GET", f"/api/nvrs?{param}={value}")

    assert param in error_of(response, 422)["message"]


# ---- Status history ------------------------------------------------------------------

def test_it_lists_the_status_events_newest_first(server):
    nvr = server.create_nvr(cameras=1)
    camera_id = nvr["cameras"][0]["id"]
    agent, _ = nvr_agent(server, nvr["hostname"])
    agent.close()
    wait_until(lambda: len(server.events(nvr["id"])) == 4, message="four status events")

    response = server.api("GET", f"/api/nvrs/{nvr['id']}/events")

    assert response.status_code == 200
    page = response.json()
    assert page["total"] == 4
    events = page["items"]
    moves = [(e["camera_id"], e["from_status"], e["to_status"], e["reason"]) for e in events]
    assert set(moves[:2]) == {(None, "online", "offline", "disconnected"),
                              (camera_id, "online", "offline", "disconnected")}
    assert set(moves[2:]) == {(None, "offline", "online", "connected"),
                              (camera_id, "offline", "online", "connected")}
    for event in events:
        assert set(event) == {"id", "nvr_id", "camera_id", "from_status", "to_status", "reason",
                              "at"}
        assert event["nvr_id"] == nvr["id"] and ISO_UTC.match(event["at"])
    assert [e["at"] for e in events] == sorted((e["at"] for e in events), reverse=True)


def test_it_paginates_the_status_events(server):
    nvr = server.create_nvr()
    for _ in range(2):
        agent, _ = nvr_agent(server, nvr["hostname"])
        agent.close()
        wait_until(lambda: server.nvr(nvr["id"])["status"] == "offline", message="offline")
    events = server.events(nvr["id"])
    assert [e["reason"] for e in events] == ["disconnected", "connected"] * 2

    pages = [server.api("GET", f"/api/nvrs/{nvr['id']}/events?limit=3&offset={offset}").json()
             for offset in (0, 3)]

    assert [p["items"] for p in pages] == [events[:3], events[3:]]
    assert [p["total"] for p in pages] == [4, 4]


def test_it_keeps_the_status_version_in_step_with_the_transitions(server):
    nvr = server.create_nvr()
    agent, _ = nvr_agent(server, nvr["hostname"])
    agent.close()

    wait_until(lambda: server.nvr(nvr["id"])["status_version"] == 2, message="status_version 2")
    assert server.nvr(nvr["id"])["last_seen"] is not None


def test_it_answers_404_for_the_events_of_an_unknown_nvr(server):
    nvr = server.create_nvr()
    server.api("DELETE", f"/api/nvrs/{nvr['id']}")

    error_of(server.api("GET", f"/api/nvrs/{nvr['id']}/events"), 404)


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "offset=-1", "limit=x"])
def test_it_refuses_bad_paging_of_the_events(server, query):
    nvr = server.create_nvr()

    response = server.api("GET", f"/api/nvrs/{nvr['id']}/events?{query}")

    assert query.split("=")[0] in error_of(response, 422)["message"]


# ---- Pushes to dashboards ------------------------------------------------------------

def test_it_pushes_creates_updates_and_deletes_to_dashboards(server):
    board = dashboard(server)
    try:
        nvr = server.create_nvr(location="HQ")
        created = board.expect(lambda m: m.get("type") == "nvr_created"
                               and m["nvr"]["id"] == nvr["id"], what="nvr_created")
        assert set(created) == {"type", "nvr"}
        assert set(created["nvr"]) == NVR_FIELDS  # no token, no internals
        assert nvr_fields(created["nvr"]) == nvr_fields(nvr)

        patched = server.api("PATCH", f"/api/nvrs/{nvr['id']}", json={"name": "Renamed"}).json()
        updated = board.expect(lambda m: m.get("type") == "nvr_updated"
                               and m["nvr"]["id"] == nvr["id"], what="nvr_updated")
        assert set(updated) == {"type", "nvr"} and set(updated["nvr"]) == NVR_FIELDS
        assert nvr_fields(updated["nvr"]) == nvr_fields(patched)
        assert updated["nvr"]["name"] == "Renamed"

        assert server.api("DELETE", f"/api/nvrs/{nvr['id']}").status_code == 204
        deleted = board.expect_type("nvr_deleted", nvr_id=nvr["id"])
        assert deleted == {"type": "nvr_deleted", "nvr_id": nvr["id"]}
    finally:
        board.close()


def test_it_pushes_nothing_for_a_refused_write(server):
    board = dashboard(server)
    try:
        nvr = server.create_nvr()
        server.api("PATCH", f"/api/nvrs/{nvr['id']}", json={"status": "online"})
        server.api("POST", "/api/nvrs", json={"name": "Twin", "hostname": nvr["hostname"]})
        marker = server.create_nvr()  # pushes arrive in order: this one comes last
        board.expect(lambda m: m.get("type") == "nvr_created" and m["nvr"]["id"] == marker["id"],
                     what="the marker")
        mine = [m for m in board.received
                if m.get("nvr", {}).get("hostname", "").lower() == nvr["hostname"].lower()]
        assert [m["type"] for m in mine] == ["nvr_created"]
    finally:
        board.close()


def test_it_closes_a_deleted_nvrs_agent_and_tells_dashboards(server):
    nvr = server.create_nvr(cameras=1)
    board = dashboard(server)
    agent, _ = nvr_agent(server, nvr["hostname"])
    try:
        board.expect_type("nvr_status", nvr_id=nvr["id"], status="online")

        assert server.api("DELETE", f"/api/nvrs/{nvr['id']}").status_code == 204

        assert agent.close_code() == 4004
        status = board.expect_type("nvr_status", nvr_id=nvr["id"], reason="deleted")
        deleted = board.expect_type("nvr_deleted", nvr_id=nvr["id"])
        assert board.received.index(status) < board.received.index(deleted)
        assert set(status) == {"type", "nvr_id", "hostname", "name", "status", "previous_status",
                               "reason", "status_version", "last_seen", "camera_ids", "at"}
        assert (status["hostname"], status["name"]) == (nvr["hostname"], nvr["name"])
        assert (status["status"], status["previous_status"]) == ("offline", "online")
        assert ISO_UTC.match(status["at"]) and ISO_UTC.match(status["last_seen"])
        assert status["camera_ids"] == [nvr["cameras"][0]["id"]]
        assert status["status_version"] == 2
    finally:
        agent.close()
        board.close()


def test_a_deleted_nvrs_id_is_never_given_to_a_new_one(server):
    """Else the new NVR would inherit the old one's history (SQLite reuses ids by default)."""
    first = server.create_nvr()
    assert server.api("DELETE", f"/api/nvrs/{first['id']}").status_code == 204
    second = server.create_nvr()
    assert second["id"] > first["id"]
    assert server.events(second["id"]) == []
