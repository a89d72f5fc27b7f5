"""What every /api call shares — errors, limits, method handling — plus
/api/stats, /healthz and /api/openapi.json, against a live server (SPEC §5)."""

import pytest
from support import dashboard, error_of, nvr_agent, wait_until

MiB = 1024 * 1024
JSON = {"Content-Type": "application/json"}

# Every call that takes a body; {nvr} and {camera} are filled in per test.
WRITES = [
    ("POST", "/api/nvrs"),
    ("PATCH", "/api/nvrs/{nvr}"),
    ("POST", "/api/cameras"),
    ("PATCH", "/api/cameras/{camera}"),
]


@pytest.fixture
def urls(server):
    """Fills {nvr} and {camera} in a path with ones that exist."""
    nvr = server.create_nvr(cameras=1)
    ids = {"nvr": nvr["id"], "camera": nvr["cameras"][0]["id"]}
    return lambda path: path.format(**ids)


# ---- Bodies -----------------------------------------------------------------------------

@pytest.mark.parametrize("method, path", WRITES)
@pytest.mark.parametrize("body", ["{not json", '{"name": "x",}', "", "   ", "\xff\xfe",
                                  '{"name": ' + "[" * 100_000 + "]" * 100_000 + "}"],
                         ids=["broken", "trailing-comma", "empty", "blank", "binary", "too-deep"])
def test_it_answers_400_to_a_body_that_is_not_json(server, urls, method, path, body):
    response = server.api(method, urls(path), data=body.encode("latin-1"), headers=JSON)

    error_of(response, 400)


@pytest.mark.parametrize("method, path", WRITES)
@pytest.mark.parametrize("body", ["[]", '[{"name": "x"}]', '"text"', "42", "1.5", "null", "true"])
def test_it_answers_400_to_a_json_body_that_is_not_an_object(server, urls, method, path, body):
    response = server.api(method, urls(path), data=body, headers=JSON)

    error_of(response, 400)


@pytest.mark.parametrize("method, path", WRITES)
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_it_answers_400_to_a_body_that_is_not_sent_as_json(server, urls, method, path,
                                                           content_type):
    headers = {"Content-Type": content_type} if content_type else {}

    response = server.api(method, urls(path), data='{"name": "x"}', headers=headers)

    error_of(response, 400)


def test_it_accepts_json_with_a_charset(server):
    nvr = server.create_nvr()

    response = server.api("PATCH", f"/api/nvrs/{nvr['id']}", data='{"name": "Charset"}',
                          headers={"Content-Type": "application/json; charset=utf-8"})

    assert response.status_code == 200, response.text
    assert response.json()["name"] == "Charset"


@pytest.mark.parametrize("method, path", WRITES)
def test_it_answers_413_to_a_body_over_one_mib(server, urls, method, path):
    body = '{"name": "' + "x" * MiB + '"}'

    response = server.api(method, urls(path), data=body, headers=JSON)

    error_of(response, 413)


def test_it_answers_413_to_a_chunked_body_over_one_mib(server):
    def chunks():
        yield b'{"name": "'
        for _ in range(17):
            yield b"x" * 65536
        yield b'"}'

    response = server.api("POST", "/api/nvrs", data=chunks(), headers=JSON)

    error_of(response, 413)


def test_it_accepts_a_body_just_under_one_mib(server, urls):
    body = '{"location": "' + "x" * (MiB - 100) + '"}'

    response = server.api("PATCH", urls("/api/nvrs/{nvr}"), data=body, headers=JSON)

    # Under the limit, so the body is read and the field's own rule answers.
    assert "location" in error_of(response, 422)["message"]


# ---- Routing -------------------------------------------------------------------------------

@pytest.mark.parametrize("method, path", [
    ("GET", "/api/nothing"),
    ("GET", "/api"),
    ("GET", "/api/"),
    ("GET", "/api/nvrs/"),
    ("GET", "/api/nvrs/abc"),
    ("GET", "/api/nvrs/-1"),
    ("GET", "/api/nvrs/0"),
    ("GET", "/api/nvrs/2147483647"),
    ("GET", "/api/nvrs/99999999999999999999"),
    ("PATCH", "/api/nvrs/99999999999999999999"),
    ("DELETE", "/api/nvrs/99999999999999999999"),
    ("GET", "/api/nvrs/99999999999999999999/events"),
    ("GET", "/api/nvrs/2147483647/events"),
    ("PATCH", "/api/nvrs/2147483647"),
    ("DELETE", "/api/nvrs/2147483647"),
    ("GET", "/api/cameras/2147483647"),
    ("GET", "/api/cameras/99999999999999999999"),
    ("PATCH", "/api/cameras/2147483647"),
    ("DELETE", "/api/cameras/99999999999999999999"),
    ("POST", "/api/nothing"),
    ("DELETE", "/api/nvrs/{nvr}/nothing"),
])
def test_it_answers_404_in_json_to_unknown_paths_and_ids(server, urls, method, path):
    response = server.api(method, urls(path), json={"name": "x"})

    error_of(response, 404)


@pytest.mark.parametrize("body", ["{not json", "[]"])
def test_it_answers_404_before_looking_at_the_body(server, body):
    response = server.api("POST", "/api/nothing", data=body, headers=JSON)

    error_of(response, 404)


@pytest.mark.parametrize("method, path, allowed", [
    ("PUT", "/api/nvrs/{nvr}", {"GET", "PATCH", "DELETE"}),
    ("POST", "/api/nvrs/{nvr}", {"GET", "PATCH", "DELETE"}),
    ("DELETE", "/api/nvrs", {"GET", "POST"}),
    ("PATCH", "/api/nvrs", {"GET", "POST"}),
    ("PUT", "/api/cameras/{camera}", {"GET", "PATCH", "DELETE"}),
    ("DELETE", "/api/cameras", {"GET", "POST"}),
    ("POST", "/api/nvrs/{nvr}/events", {"GET"}),
    ("POST", "/api/stats", {"GET"}),
    ("DELETE", "/healthz", {"GET"}),
])
@pytest.mark.parametrize("body", [None, "{}", "{not json"])
def test_it_answers_405_in_json_to_a_wrong_method(server, urls, method, path, allowed, body):
    response = server.api(method, urls(path), data=body, headers=JSON if body else {})

    error_of(response, 405)
    assert allowed <= {m.strip() for m in response.headers.get("Allow", "").split(",")}


# ---- /api/stats, /healthz, /api/openapi.json ----------------------------------------------------

def stats(server):
    response = server.api("GET", "/api/stats")
    assert response.status_code == 200, response.text
    return response.json()


def stats_listing(server, hostname):
    """The stats, once they list ``hostname`` among the connected NVRs."""
    body = stats(server)
    return body if hostname in body["nvr_hostnames"] else None


def test_it_reports_connections_in_stats(server):
    body = stats(server)

    assert isinstance(body["nvr_connections"], int)
    assert isinstance(body["dashboard_clients"], int)
    assert isinstance(body["nvr_hostnames"], list)


def test_it_counts_a_connected_agent_and_a_dashboard_in_stats(server):
    nvr = server.create_nvr()
    board = dashboard(server)
    agent, _ = nvr_agent(server, nvr["hostname"])
    try:
        seen = wait_until(lambda: stats_listing(server, nvr["hostname"]),
                          message="the agent in stats")
        assert seen["nvr_connections"] >= 1
        assert seen["dashboard_clients"] >= 1
    finally:
        agent.close()
        board.close()
    wait_until(lambda: nvr["hostname"] not in stats(server)["nvr_hostnames"],
               message="the agent gone from stats")


def test_it_answers_healthz(server):
    response = server.api("GET", "/healthz")

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")


def test_it_describes_the_api_in_openapi_3(server):
    response = server.api("GET", "/api/openapi.json")

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    spec = response.json()
    assert spec["openapi"].startswith("3.")
    assert spec["info"]["title"] and spec["info"]["version"]
    operations = {(method.upper(), path) for path, item in spec["paths"].items()
                  for method in item if method in {"get", "post", "patch", "put", "delete"}}
    assert {
        ("GET", "/api/nvrs"), ("POST", "/api/nvrs"),
        ("GET", "/api/nvrs/{nvr_id}"), ("PATCH", "/api/nvrs/{nvr_id}"),
        ("DELETE", "/api/nvrs/{nvr_id}"), ("GET", "/api/nvrs/{nvr_id}/events"),
        ("GET", "/api/cameras"), ("POST", "/api/cameras"),
        ("GET", "/api/cameras/{camera_id}"), ("PATCH", "/api/cameras/{camera_id}"),
        ("DELETE", "/api/cameras/{camera_id}"), ("GET", "/api/stats"),
    } <= operations
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in {"get", "post", "patch", "put", "delete"}:
                assert operation["responses"], (method, path)
        for name in (p.strip("{}") for p in path.split("/") if p.startswith("{")):
            declared = [p["name"] for p in item.get("parameters", [])] + [
                p["name"] for op in item.values() if isinstance(op, dict)
                for p in op.get("parameters", []) if isinstance(p, dict)]
            assert name in declared, (path, name)
