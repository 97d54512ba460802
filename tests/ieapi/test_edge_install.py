"""The edge install files (edge/): the compose file and the systemd unit start ieapi so that it
survives reboots, reads its token from a file, and names the IE explicitly; README shows them.

Docker Compose is not installed here, so its variable interpolation (`${VAR:-default}`,
`${VAR:?message}`, the compose-spec forms the file uses) is reproduced by `_interpolate`. The
unit file is checked by systemd's own parser (`systemd-analyze verify`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from ieapi.settings import ENV_VARIABLES, Settings, SettingsError

ROOT = Path(__file__).resolve().parents[2]
EDGE = ROOT / "edge"
README = (ROOT / "README.md").read_text()
_VAR = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?:(?P<op>:-|:\?)(?P<arg>[^}]*))?\}")


def _env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


def _interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's interpolation: `:-` default when unset or empty, `:?` error when so."""
    if isinstance(value, dict):
        return {k: _interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        given = env.get(match["name"], "")
        if given:
            return given
        if match["op"] == ":?":
            raise ValueError(f"required variable {match['name']} is missing a value: "
                             f"{match['arg']}")
        return match["arg"] or ""
    return _VAR.sub(one, value)


def _compose(env: Mapping[str, str]) -> dict[str, Any]:
    doc: dict[str, Any] = _interpolate(yaml.safe_load((EDGE / "compose.yaml").read_text()), env)
    return doc["services"]["ieapi"]  # type: ignore[no-any-return]


def _example_env() -> dict[str, str]:
    return {**_env_file(EDGE / "ieapi.env.example"), "DOCKER_GID": "998"}


def test_compose_survives_reboots_with_the_socket_and_a_token_file() -> None:
    service = _compose(_example_env())
    assert service["restart"] == "always"
    mounts = {m.split(":")[1]: m.split(":")[0] for m in service["volumes"]}
    assert mounts["/var/run/docker.sock"] == "/var/run/docker.sock"
    token_file = service["environment"]["IEAPI_TOKEN_FILE"]
    assert token_file in mounts  # the token is a mounted file, never a variable
    assert "IEAPI_TOKEN" not in service["environment"]
    assert service["group_add"] == ["998"]
    assert service["ports"] == ["8081:8081"]


def test_compose_names_the_ie_explicitly() -> None:
    """What compose hands the container passes ieapi's in-container identity check, and
    compose itself refuses to start without the IE id or the instance id."""
    env = _example_env()
    given = {k: v for k, v in _compose(env)["environment"].items()
             if k in ENV_VARIABLES.values() and k != "IEAPI_TOKEN_FILE"}
    settings = Settings.from_env(given)
    settings.check_identity(in_container=True)
    assert settings.ie_id == env["IEAPI_IE_ID"]
    assert settings.managed_by == env["IEAPI_INSTANCE_ID"]
    for variable in ("IEAPI_IE_ID", "IEAPI_INSTANCE_ID", "DOCKER_GID"):
        with pytest.raises(ValueError, match=f"required variable {variable}"):
            _compose({k: v for k, v in env.items() if k != variable})
    with pytest.raises(SettingsError, match="running in a container"):
        Settings.from_env({"IEAPI_TOKEN": "t"}).check_identity(in_container=True)


def test_systemd_unit_runs_the_installed_entry_point() -> None:
    text = (EDGE / "llo-ieapi.service").read_text()
    values = dict(re.findall(r"^(\w+)=(.*)$", text, flags=re.MULTILINE))
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert Path(values["ExecStart"]).name in scripts
    assert values["Restart"] == "always"
    assert values["WantedBy"] == "multi-user.target"
    assert "docker.service" in values["After"]
    env = _env_file(EDGE / "ieapi.env.example")
    assert values["EnvironmentFile"] == "/etc/llo/ieapi.env"
    Settings.from_env(env).check_identity(in_container=True)  # explicit there too


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed (Debian package systemd)")
    entry = Path(sys.executable).parent / "llo-ieapi"
    if not entry.exists():
        pytest.skip(f"{entry} not installed")
    unit = tmp_path / "llo-ieapi.service"
    # The only change: ExecStart points at an entry point that exists on this machine.
    unit.write_text((EDGE / "llo-ieapi.service").read_text()
                    .replace("/opt/llo/bin/llo-ieapi", str(entry)))
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr
    unit.write_text(unit.read_text().replace("Restart=always", "Restart=sometimes"))
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert "restart specifier" in done.stderr  # the check has teeth


def test_readme_shows_every_way_and_the_python_it_needs() -> None:
    for shown in ("edge/compose.yaml", "edge/llo-ieapi.service", "docker run"):
        assert shown in README, shown
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    version = requires.removeprefix(">=")
    assert re.search(rf"Python {re.escape(version)} or newer", README), requires
