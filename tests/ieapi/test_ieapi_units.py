"""Pure parts of the IE API: settings, spec translation, status mapping, error mapping."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import docker.errors
import pytest
from pydantic import ValidationError

from ieapi.auth import TokenSource
from ieapi.contract import LABEL_NAME, LABEL_SPEC_HASH, ContainerSpec, ContainerState
from ieapi.desired import (
    WARNING_ALIAS_WITHOUT_SERVICE,
    auth_config,
    desired_container,
    network_name,
)
from ieapi.engine import EnsureOutcome, _created_key
from ieapi.errors import (
    ConflictError,
    DockerError,
    InvalidRequestError,
    NotFoundError,
    PortInUseError,
    PrivilegedNotAllowedError,
    from_api_error,
)
from ieapi.observe import docker_time, network_of, status_from_inspect
from ieapi.service import field_path, invalid_request_from
from ieapi.settings import Settings, SettingsError, running_in_container

# --------------------------------------------------------------------------- settings


def test_settings_from_env_parses_and_defaults() -> None:
    settings = Settings.from_env({
        "IEAPI_TOKEN": "t", "IEAPI_IE_ID": "urn:ngsi-ld:IE:7", "IEAPI_ALLOW_PRIVILEGED": "true",
        "IEAPI_STOP_TIMEOUT_SECONDS": "3", "DOCKER_HOST": "tcp://10.0.0.1:2376",
        "IEAPI_CONTAINER_PREFIX": "", "IEAPI_INSTANCE_ID": "  "})
    assert settings.ie_id == "urn:ngsi-ld:IE:7"
    assert settings.managed_by == "urn:ngsi-ld:IE:7"  # instance id defaults to the IE id
    assert settings.allow_privileged is True
    assert settings.stop_timeout_seconds == 3
    assert settings.docker_host == "tcp://10.0.0.1:2376"
    assert settings.container_prefix == "llo"  # empty means unset
    assert settings.docker_api_version == "1.41"
    settings.check_startable()


def test_settings_errors_name_the_variable(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="IEAPI_STOP_TIMEOUT_SECONDS"):
        Settings.from_env({"IEAPI_STOP_TIMEOUT_SECONDS": "soon"})
    with pytest.raises(SettingsError, match="IEAPI_CONTAINER_PREFIX"):
        Settings.from_env({"IEAPI_CONTAINER_PREFIX": "bad/prefix"})
    with pytest.raises(SettingsError, match="only one"):
        Settings(token="a", token_file=tmp_path / "t").check_startable()
    with pytest.raises(SettingsError, match="unreadable"):
        Settings(token_file=tmp_path / "missing").check_startable()
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(SettingsError, match="empty"):
        Settings(token_file=tmp_path / "empty").check_startable()
    Settings(insecure_no_auth=True).check_startable()


def test_in_a_container_the_ie_id_and_instance_id_must_be_explicit(tmp_path: Path) -> None:
    """A container's host name (the default of both) is new on every re-create."""
    both = {"IEAPI_TOKEN": "t", "IEAPI_IE_ID": "urn:ngsi-ld:IE:7", "IEAPI_INSTANCE_ID": "ie-7"}
    Settings.from_env(both).check_identity(in_container=True)
    for missing, named in (("IEAPI_IE_ID", "IEAPI_IE_ID"), ("IEAPI_INSTANCE_ID",
                                                            "IEAPI_INSTANCE_ID")):
        env = {k: v for k, v in both.items() if k != missing}
        with pytest.raises(SettingsError, match=f"running in a container: set {named} "):
            Settings.from_env(env).check_identity(in_container=True)
        Settings.from_env(env).check_identity(in_container=False)  # bare install: defaults ok
    with pytest.raises(SettingsError, match="IEAPI_IE_ID and IEAPI_INSTANCE_ID"):
        Settings.from_env({"IEAPI_TOKEN": "t"}).check_identity(in_container=True)
    marker = tmp_path / ".dockerenv"
    assert running_in_container((marker,)) is False
    marker.touch()
    assert running_in_container((tmp_path / "absent", marker)) is True


def test_token_source_keeps_last_token_while_file_is_missing(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("abc")
    tokens = TokenSource(token_file=token_file)
    assert tokens.accepts("Bearer abc")
    assert tokens.accepts("bearer abc")
    token_file.unlink()
    assert tokens.accepts("Bearer abc")
    assert not tokens.accepts("Bearer abd")
    assert not tokens.accepts(None)
    assert not TokenSource().enabled


# --------------------------------------------------------------------------- desired


def _settings(**overrides: Any) -> Settings:
    return Settings(token="t", ie_id="ie-1", container_prefix="llo", **overrides)


def test_plan_translates_the_spec() -> None:
    spec = ContainerSpec.model_validate({
        "image": "reg.example/app:1", "isJob": False, "exposePorts": True,
        "ports": [{"number": 53, "protocol": "UDP"}, {"number": 8080}, {"number": 8080}],
        "envVars": [{"key": "A", "value": "1"}],
        "cliArgs": [{"key": "-dbhost", "value": "service-1-mongo"}, {"key": "-forwarding"}],
        "service": "urn_ngsi-ld_Service_1", "alias": "orion",
        "registryAuth": {"url": "reg.example", "username": "u", "password": "p"},
    })
    desired = desired_container("ns.orion", spec, _settings())
    assert desired.container_name == "llo-ns.orion"
    assert desired.command == ["-dbhost", "service-1-mongo", "-forwarding"]
    assert desired.environment == ["A=1"]
    assert desired.port_bindings == {"53/udp": 53, "8080/tcp": 8080}
    assert desired.restart_policy["Name"] == "on-failure"
    assert desired.network == "llo-net-urn_ngsi-ld_Service_1"
    assert desired.aliases == ["orion"]
    assert desired.auth == {"username": "u", "password": "p", "serveraddress": "reg.example"}
    assert desired.labels[LABEL_NAME] == "ns.orion"
    assert desired.labels[LABEL_SPEC_HASH] == spec.spec_hash()
    assert "p" not in desired.labels.values()
    assert desired.warnings == []


def test_plan_job_unexposed_no_service() -> None:
    spec = ContainerSpec.model_validate({"image": "x", "isJob": True, "exposePorts": False,
                                         "ports": [{"number": 80}], "alias": "lonely"})
    desired = desired_container("ns.job", spec, _settings())
    assert desired.restart_policy == {"Name": "no"}
    assert desired.port_bindings == {}
    assert desired.command is None  # the image's own CMD
    assert desired.network is None
    assert desired.aliases == []
    assert desired.warnings == [WARNING_ALIAS_WITHOUT_SERVICE]


def test_plan_refuses_privileged_unless_allowed() -> None:
    spec = ContainerSpec.model_validate({"image": "x", "privileged": True})
    with pytest.raises(PrivilegedNotAllowedError):
        desired_container("ns.p", spec, _settings())
    assert desired_container("ns.p", spec, _settings(allow_privileged=True)).privileged is True


def test_network_names_are_distinct_and_docker_safe() -> None:
    assert network_name("llo", "svc-1") == "llo-net-svc-1"
    odd_a, odd_b = network_name("llo", "a:b"), network_name("llo", "a/b")
    assert odd_a != odd_b
    assert odd_a.startswith("llo-net-a-b-")
    assert auth_config(None) is None


def test_spec_hash_ignores_credentials_and_owner() -> None:
    base = {"image": "x", "registryAuth": {"username": "u", "password": "one"},
            "owner": {"name": "a"}}
    rotated = {"image": "x", "registryAuth": {"username": "u", "password": "two"},
               "owner": {"name": "b"}}
    assert (ContainerSpec.model_validate(base).spec_hash()
            == ContainerSpec.model_validate(rotated).spec_hash())
    assert (ContainerSpec.model_validate({"image": "x"}).spec_hash()
            != ContainerSpec.model_validate({"image": "x", "isJob": True}).spec_hash())


# --------------------------------------------------------------------------- observe


def _inspect(**state: Any) -> dict[str, Any]:
    return {
        "Id": "c" * 64, "Name": "/llo-ns.a", "Image": "sha256:" + "1" * 64,
        "RestartCount": 2,
        "State": {"Status": "running", "ExitCode": 0, "Error": "",
                  "StartedAt": "2026-01-01T00:00:00.5Z", "FinishedAt": "0001-01-01T00:00:00Z",
                  **state},
        "Config": {"Image": "app:1", "Labels": {LABEL_NAME: "ns.a", LABEL_SPEC_HASH: "h"}},
        "HostConfig": {"NetworkMode": "default", "RestartPolicy": {"Name": "on-failure"},
                       "PortBindings": {"8080/tcp": [{"HostIp": "", "HostPort": "8080"}],
                                        "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "53"}]}},
        "NetworkSettings": {"Networks": {}},
    }


def test_status_from_inspect_running() -> None:
    status = status_from_inspect(_inspect(), "llo")
    assert status.state is ContainerState.RUNNING
    assert status.exit_code is None  # a running container has no exit code yet
    assert status.finished_at is None  # Docker's zero time
    assert status.started_at == "2026-01-01T00:00:00.5Z"
    assert (status.name, status.spec_hash, status.restart_count) == ("ns.a", "h", 2)
    assert [(p.container_port, p.protocol.value, p.host_ip, p.host_port) for p in status.ports] == [
        (53, "UDP", "127.0.0.1", 53), (8080, "TCP", "", 8080)]
    assert status.network == "bridge"
    assert status.is_job is False


def test_status_from_inspect_exited_and_unknown() -> None:
    exited = status_from_inspect(_inspect(Status="exited", ExitCode=7,
                                          FinishedAt="2026-01-01T00:01:00Z"), "llo")
    assert (exited.state, exited.exit_code, exited.finished_at) == (
        ContainerState.EXITED, 7, "2026-01-01T00:01:00Z")
    assert status_from_inspect(_inspect(Status="weird"), "llo").state is ContainerState.DEAD
    assert docker_time(None) is None


def test_network_joined_by_id_is_reported_by_name() -> None:
    attrs = _inspect()
    net_id = "a" * 64
    attrs["HostConfig"]["NetworkMode"] = net_id
    attrs["NetworkSettings"]["Networks"] = {"llo-net-s": {"NetworkID": net_id}}
    assert network_of(attrs) == "llo-net-s"


def test_created_key_orders_variable_length_fractions() -> None:
    assert _created_key("2026-01-01T00:00:00.1Z") < _created_key("2026-01-01T00:00:00.12Z")
    assert _created_key("2026-01-01T00:00:00Z") < _created_key("2026-01-01T00:00:00.000001Z")


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(("status", "message", "expected", "field"), [
    (400, "invalid reference format: repository name must be lowercase", InvalidRequestError,
     "image"),
    (500, "driver failed programming external connectivity: Bind for 0.0.0.0:80 failed: port "
          "is already allocated", PortInUseError, "ports"),
    (404, "No such container: x", NotFoundError, None),
    (409, "Conflict. The container name is already in use", ConflictError, None),
    (400, "invalid environment variable", InvalidRequestError, None),
    (500, "OCI runtime create failed", DockerError, None),
])
def test_docker_errors_are_mapped(status: int, message: str, expected: type[Exception],
                                  field: str | None) -> None:
    class _Response:
        status_code = status
        reason = "x"

    error = from_api_error(docker.errors.APIError("e", response=_Response(),
                                                  explanation=message))
    assert type(error) is expected
    assert error.field == field
    if expected is PortInUseError:  # reworded so it stays the same across attempts
        assert "host port 80 (0.0.0.0)" in error.message
        assert error.message.endswith("port is already allocated")
    else:
        assert message in error.message


def test_validation_errors_become_dotted_camel_case_paths() -> None:
    assert field_path(("env_vars", 0, "key")) == "envVars.0.key"
    with pytest.raises(ValidationError) as caught:
        ContainerSpec.model_validate({"image": "x", "cli_args": [{"key": ""}]})
    invalid = invalid_request_from(caught.value)
    assert invalid.field == "cliArgs.0.key"
    assert EnsureOutcome.PULLING.http_status == 202
    assert EnsureOutcome.PULL_FAILED.http_status == 200
    assert EnsureOutcome.CREATED.http_status == 201


def test_port_conflict_message_is_stable_across_attempts() -> None:
    """Docker names a fresh endpoint id on every attempt; the hooks' status must not churn."""
    from ieapi.errors import stable_port_message

    first = stable_port_message(
        "driver failed programming external connectivity on endpoint llo-default.a "
        "(3f2a9c8e1b7d): Bind for 0.0.0.0:8088 failed: port is already allocated")
    second = stable_port_message(
        "driver failed programming external connectivity on endpoint llo-default.a "
        "(77aa01bc92ef): Bind for 0.0.0.0:8088 failed: port is already allocated")
    assert first == second
    assert "8088" in first
    assert "3f2a9c8e1b7d" not in first
    assert "8088" in stable_port_message(
        "Error starting userland proxy: listen tcp4 0.0.0.0:8088: bind: address already in use")
