"""The local server's test knobs: counters, injected faults, latency and runtime settings."""

from __future__ import annotations

import time

import httpx
import pytest

from server_support import api, api_server, area  # noqa: F401 (fixtures)

LS_ROUTE = "GET /filesystem/{system_name}/ops/ls"
STAT_ROUTE = "GET /filesystem/{system_name}/ops/stat"


@pytest.fixture(autouse=True)
def clean_knobs(api_server):
    api_server.clear_faults()
    api_server.reset_counters()
    yield
    api_server.clear_faults()
    api_server.update_settings(latency=0, command_timeout=1)


def test_counters_per_route_template(api, api_server, area):
    api_server.reset_counters()
    for _ in range(3):
        assert api.get("filesystem/ops/ls", path=str(area)).status_code == 200
    assert api.get("filesystem/ops/stat", path=str(area)).status_code == 200

    counts = api_server.counters()

    assert counts[LS_ROUTE] == 3
    assert counts[STAT_ROUTE] == 1
    assert not any(key.startswith("GET /_local") for key in counts)


def test_counters_reset(api, api_server, area):
    api.get("filesystem/ops/ls", path=str(area))

    api_server.reset_counters()

    assert api_server.counters() == {}


def test_counters_include_failed_requests(api, api_server):
    api.get("filesystem/ops/ls", path="/etc")

    assert api_server.counters()[LS_ROUTE] == 1


def test_status_fault_with_count_and_retry_after(api, api_server, area):
    api_server.set_faults([{"route": "/filesystem/{system_name}/ops/ls", "kind": "status", "status": 503, "retry_after": 2, "count": 2}])

    first = api.get("filesystem/ops/ls", path=str(area))
    second = api.get("filesystem/ops/ls", path=str(area))
    third = api.get("filesystem/ops/ls", path=str(area))

    assert first.status_code == 503
    assert first.headers["Retry-After"] == "2"
    assert first.json()["errorType"] == "error"
    assert second.status_code == 503
    assert third.status_code == 200
    assert api_server.counters()[LS_ROUTE] == 3


def test_fault_matches_route_and_method_only(api, api_server, area):
    api_server.set_faults([{"method": "GET", "route": "/filesystem/{system_name}/ops/stat", "kind": "status", "status": 500}])

    listed = api.get("filesystem/ops/ls", path=str(area))
    statted = api.get("filesystem/ops/stat", path=str(area))
    other_method = api.post("filesystem/ops/mkdir", {"path": str(area / "d")})

    assert listed.status_code == 200
    assert statted.status_code == 500
    assert other_method.status_code == 201


def test_fault_without_count_lasts_until_cleared(api, api_server, area):
    api_server.set_faults([{"kind": "status", "status": 429, "route": "/filesystem/{system_name}/ops/ls"}])

    during = [api.get("filesystem/ops/ls", path=str(area)).status_code for _ in range(4)]
    api_server.clear_faults()
    after = api.get("filesystem/ops/ls", path=str(area)).status_code

    assert during == [429, 429, 429, 429]
    assert after == 200


def test_fault_probability_zero_never_fires(api, api_server, area):
    api_server.set_faults([{"kind": "status", "status": 500, "probability": 0}])

    codes = {api.get("filesystem/ops/ls", path=str(area)).status_code for _ in range(5)}

    assert codes == {200}


def test_drop_fault_closes_connection(api, api_server, area):
    api_server.set_faults([{"kind": "drop", "route": "/filesystem/{system_name}/ops/ls", "count": 1}])

    with pytest.raises(httpx.TransportError):
        api.get("filesystem/ops/ls", path=str(area))
    recovered = api.get("filesystem/ops/ls", path=str(area))

    assert recovered.status_code == 200


def test_stall_fault_delays_then_responds(api, api_server, area):
    api_server.set_faults([{"kind": "stall", "seconds": 0.6, "count": 1}])

    started = time.monotonic()
    stalled = api.get("filesystem/ops/ls", path=str(area))
    stalled_time = time.monotonic() - started

    assert stalled.status_code == 200
    assert stalled_time >= 0.6


def test_stall_longer_than_client_timeout(api, api_server, area):
    api_server.set_faults([{"kind": "stall", "seconds": 3, "count": 1}])

    with pytest.raises(httpx.ReadTimeout):
        api.http.get(
            f"/filesystem/{api.system}/ops/ls", params={"path": str(area)}, headers=api.headers, timeout=0.5
        )


def test_latency_setting(api, api_server, area):
    api_server.update_settings(latency=0.4)

    started = time.monotonic()
    response = api.get("filesystem/ops/ls", path=str(area))
    elapsed = time.monotonic() - started

    assert response.status_code == 200
    assert elapsed >= 0.4


def test_command_timeout_setting_shows_in_systems(api, api_server):
    settings = api_server.update_settings(command_timeout=2)

    response = api.http.get("/status/systems", headers=api.headers)

    assert settings["command_timeout"] == 2
    assert response.json()["systems"][0]["ssh"]["timeout"]["commandExecution"] == 2


def test_fractional_command_timeout_shows_rounded_up(api, api_server):
    api_server.update_settings(command_timeout=0.5)

    response = api.http.get("/status/systems", headers=api.headers)

    # The document types commandExecution as an integer, like the real server's setting.
    assert response.json()["systems"][0]["ssh"]["timeout"]["commandExecution"] == 1


def test_token_fault_changes_expires_in(api_server):
    api_server.set_faults([{"kind": "token_expiry", "seconds": 45, "count": 1}])

    with httpx.Client(base_url=api_server.url) as http:
        credentials = {
            "grant_type": "client_credentials",
            "client_id": api_server.client_id,
            "client_secret": api_server.client_secret,
        }
        short = http.post("/auth/token", data=credentials).json()
        normal = http.post("/auth/token", data=credentials).json()

    assert short["expires_in"] == 45
    assert normal["expires_in"] == 300


def test_knobs_need_a_token(api_server):
    with httpx.Client(base_url=api_server.url) as http:
        response = http.get("/_local/counters")

    assert response.status_code == 401


def test_invalid_fault_rule_rejected(api_server):
    with httpx.Client(base_url=api_server.url) as http:
        response = http.put("/_local/faults", json=[{"kind": "explode"}], headers=api_server.auth_headers())

    assert response.status_code == 400
    assert response.json()["errorType"] == "validation"
