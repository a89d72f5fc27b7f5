"""Token mode (SPEC §2, §4, §5): NVR tokens, API keys and roles, limits."""

import hashlib
import json
import subprocess
import sys

import pytest
from support import (
    ADMIN_KEY,
    ROOT,
    Client,
    auth,
    flask_env,
    nvr_agent,
    unique,
    wait_until,
)
from websockets.exceptions import ConnectionClosed

from vmsapp import credentials


def api_key(server, role):
    """A key made by the CLI, as an operator would: the key alone on the last line."""
    run = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "create-api-key", "--role", role,
         "--name", unique("key")],
        cwd=ROOT, env=flask_env(server.database_url), capture_output=True, text=True, check=True)
    return run.stdout.strip().splitlines()[-1]


def flask_cli(server, *args):
    return subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT,
                          env=flask_env(server.database_url), capture_output=True, text=True)


# -- REST --------------------------------------------------------------------------

@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic " + ADMIN_KEY, "Bearer "])
def test_rest_refuses_a_missing_or_wrong_key_with_401(server, header):
    response = server.api("GET", "/api/nvrs", key=None,
                          headers={"Authorization": header} if header else {})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_viewer_key_reads_but_may_not_write(server):
    key = api_key(server, "viewer")
    nvr = server.create_nvr()

    assert server.api("GET", f"/api/nvrs/{nvr['id']}", key=key).status_code == 200
    for method, path, body in [("POST", "/api/nvrs", {"name": "x", "hostname": unique()}),
                               ("PATCH", f"/api/nvrs/{nvr['id']}", {"name": "y"}),
                               ("DELETE", f"/api/nvrs/{nvr['id']}", None),
                               ("POST", f"/api/nvrs/{nvr['id']}/token", None)]:
        response = server.api(method, path, key=key, json=body)
        assert response.status_code == 403, (method, path)
        assert response.json()["error"]["code"] == "forbidden"
    assert server.nvr(nvr["id"])["name"] == nvr["name"]


def test_the_openapi_document_and_health_check_need_no_key(server):
    assert server.api("GET", "/api/openapi.json", key=None).status_code == 200
    assert server.api("GET", "/healthz", key=None).status_code == 200


def test_keys_are_listed_without_their_secret_and_revoked_at_once(server):
    key = api_key(server, "admin")
    assert server.api("GET", "/api/stats", key=key).status_code == 200
    listing = flask_cli(server, "list-api-keys").stdout
    assert key not in listing and key[:12] in listing
    [line] = [row for row in listing.splitlines() if key[:12] in row]

    revoked = flask_cli(server, "revoke-api-key", line.split()[0])

    assert revoked.returncode == 0
    assert server.api("GET", "/api/stats", key=key).status_code == 401


def test_unknown_keys_cannot_be_revoked(server):
    run = flask_cli(server, "revoke-api-key", "999999")
    assert run.returncode != 0 and "No API key with id 999999" in run.stderr


# -- NVR tokens ----------------------------------------------------------------------

def test_a_new_nvr_gets_a_long_random_token_stored_only_as_its_hash(server):
    nvr = server.create_nvr()
    token = nvr["token"]

    assert len(token) >= 43  # 32 random bytes, URL-safe base64
    assert "token" not in server.nvr(nvr["id"])
    [row] = server.sql("SELECT * FROM nvrs WHERE id = :id", id=nvr["id"])
    assert row["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert token not in json.dumps({k: str(v) for k, v in row.items()})


@pytest.mark.parametrize("token", [None, "", "wrong", "x" * 600])
def test_an_agent_with_a_missing_or_wrong_token_is_refused_with_1008(server, token):
    nvr = server.create_nvr()
    client = Client(server.ws_url)
    message = {"type": "auth", "hostname": nvr["hostname"]}
    if token is not None:
        message["token"] = token
    client.send(message)

    assert client.expect_type("error")["code"] in ("invalid_token", "invalid_message")
    assert client.close_code() == 1008
    assert server.nvr(nvr["id"])["status"] == "offline"


def test_an_agent_may_send_its_token_in_the_upgrade_header(server):
    nvr = server.create_nvr()
    client = Client(server.ws_url,
                    additional_headers={"Authorization": f"Bearer {nvr['token']}"})
    client.send({"type": "auth", "hostname": nvr["hostname"]})
    assert client.expect_type("auth_ok")["nvr_id"] == nvr["id"]
    client.close()


def test_a_new_token_replaces_the_old_one_and_closes_its_connection(server):
    nvr = server.create_nvr()
    old_token = nvr["token"]
    agent, _ = nvr_agent(server, nvr["hostname"])

    response = server.api("POST", f"/api/nvrs/{nvr['id']}/token")

    assert response.status_code == 200
    new_token = response.json()["token"]
    assert new_token != old_token and len(new_token) >= 43
    assert agent.close_code() == 1008
    stale = Client(server.ws_url)
    stale.send({"type": "auth", "hostname": nvr["hostname"], "token": old_token})
    assert stale.expect_type("error")["code"] == "invalid_token"
    fresh = Client(server.ws_url)
    fresh.send({"type": "auth", "hostname": nvr["hostname"], "token": new_token})
    fresh.expect_type("auth_ok")
    fresh.close()


def test_failed_attempts_are_logged_with_the_address_and_never_the_secret(server):
    nvr = server.create_nvr()
    secret = "not-the-token-" + unique()
    client = Client(server.ws_url)
    client.send({"type": "auth", "hostname": nvr["hostname"], "token": secret})
    client.close_code()
    server.api("GET", "/api/nvrs", key=secret)

    log = wait_until(lambda: (text := server.log()).count("auth refused from 127.0.0.1") and
                     f"nvr {nvr['hostname']}" in text and text, message="the log lines")
    assert secret not in log


# -- dashboards ----------------------------------------------------------------------

@pytest.mark.parametrize("message", [{"type": "dashboard"},
                                     {"type": "dashboard", "token": "wrong"}])
def test_a_dashboard_without_a_valid_key_is_refused_with_1008(server, message):
    client = Client(server.ws_url)
    client.send(message)
    assert client.expect_type("error")["code"] == "unauthorized"
    assert client.close_code() == 1008


def test_a_viewer_key_may_watch_and_may_send_it_in_the_upgrade_header(server):
    key = api_key(server, "viewer")
    client = Client(server.ws_url, additional_headers={"Authorization": f"Bearer {key}"})
    client.send({"type": "dashboard"})
    client.expect_type("dashboard_ok")
    snapshot = client.expect_type("snapshot")
    assert key not in json.dumps(snapshot)
    client.close()


# -- limits ----------------------------------------------------------------------------

def test_an_address_that_keeps_failing_is_slowed_down(make_server):
    live = make_server(VMS_AUTH_FAILURE_LIMIT="3 per minute")
    nvr = live.create_nvr()
    for _ in range(3):
        assert live.api("GET", "/api/nvrs", key="wrong").status_code == 401

    refused = live.api("GET", "/api/nvrs")  # even with the right key, for a while
    assert refused.status_code == 429 and refused.headers["Retry-After"]
    client = Client(live.ws_url)
    client.send(auth(live, nvr["hostname"]))
    assert client.expect_type("error")["code"] == "too_many_attempts"
    assert client.close_code() == 1008


def test_a_peer_sending_too_fast_is_told_then_closed(make_server):
    live = make_server(VMS_MESSAGE_RATE="5", VMS_MESSAGE_BURST="5")
    nvr = live.create_nvr()
    agent, _ = nvr_agent(live, nvr["hostname"])
    try:
        for _ in range(40):
            agent.send({"type": "heartbeat"})
    except ConnectionClosed:
        pass  # closed for it before all 40 went out: what is tested below

    assert agent.expect_type("error")["code"] == "rate_limited"
    assert agent.close_code() == 1008


def test_open_mode_needs_no_token_and_no_key_and_says_so(make_server):
    live = make_server(VMS_AUTH_MODE="open")
    assert "WARNING" in live.log() and "auth mode is open" in live.log()
    response = live.api("POST", "/api/nvrs", key=None,
                        json={"name": "Open", "hostname": unique()})
    assert response.status_code == 201
    client = Client(live.ws_url)
    client.send({"type": "auth", "hostname": response.json()["hostname"]})
    client.expect_type("auth_ok")
    watcher = Client(live.ws_url)
    watcher.send({"type": "dashboard"})
    watcher.expect_type("dashboard_ok")
    client.close()
    watcher.close()


def test_behind_a_proxy_limits_count_each_client_not_the_proxy(make_server):
    live = make_server(VMS_AUTH_FAILURE_LIMIT="2 per minute", VMS_PROXY_HOPS="1")
    for _ in range(2):
        response = live.api("GET", "/api/nvrs", key="wrong",
                            headers={"X-Forwarded-For": "203.0.113.7"})
        assert response.status_code == 401
    blocked = live.api("GET", "/api/nvrs", headers={"X-Forwarded-For": "203.0.113.7"})
    other = live.api("GET", "/api/nvrs", headers={"X-Forwarded-For": "198.51.100.9"})

    assert blocked.status_code == 429
    assert other.status_code == 200
    assert "auth refused from 203.0.113.7" in live.log()


def test_secrets_never_start_with_a_dash_so_command_lines_take_them_as_values():
    """One token in 64 used to, and ``nvr_sim HOST --token -x…`` then failed."""
    issued = [credentials.new_secret() for _ in range(5000)]

    assert [secret for secret in issued if secret.startswith("-")] == []
    assert len(set(issued)) == len(issued)
    assert {len(secret) for secret in issued} == {43}  # 32 random bytes, base64url
