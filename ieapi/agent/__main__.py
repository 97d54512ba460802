"""`python -m ieapi.agent` (or `llo-ieapi-agent`): the IE Docker API as an outbound-only NATS
agent, configured by environment variables (see --help)."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Sequence

from ieapi.agent.settings import AGENT_ENV_HELP, AgentSettings, engine_settings
from ieapi.settings import ENV_HELP, SettingsError
from llo_serving.logs import install

USAGE = f"""\
usage: python -m ieapi.agent [--help]

Serves the IE Docker API over NATS: dials out to IEAPI_NATS_URL and answers the IE contract on
the subjects of IEAPI_NATS_IE. Needs no open port on the IE.
Example: IEAPI_NATS_URL=tls://nats.example:4222 IEAPI_NATS_IE=edge-box-1 \\
         IEAPI_NATS_NKEY_SEED_FILE=/run/secrets/nkey IEAPI_IE_ID=urn:ngsi-ld:IE:1 \\
         python -m ieapi.agent

{AGENT_ENV_HELP}
{ENV_HELP}"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if args:
        print(USAGE, file=sys.stderr)
        return 2
    try:
        settings = AgentSettings.from_env()
        settings.check_startable()
        engine_config = engine_settings()
        engine_config.check_startable()
    except SettingsError as exc:
        print(f"ieapi agent: cannot start: {exc}", file=sys.stderr)
        return 2
    # The same log lines as the HTTP server (IEAPI_LOG_FORMAT, IEAPI_LOG_LEVEL, field `ie`).
    install(engine_config.log_format, engine_config.log_level, app_logger="ieapi",
            fields={"ie": engine_config.ie_id})
    asyncio.run(_serve(settings, engine_config))
    return 0


async def _serve(settings: AgentSettings, engine_config: object) -> None:
    from ieapi.agent import Agent  # noqa: PLC0415  (imports the docker SDK)
    from ieapi.engine import Engine  # noqa: PLC0415
    from ieapi.service import Service  # noqa: PLC0415
    from ieapi.settings import Settings  # noqa: PLC0415

    assert isinstance(engine_config, Settings)
    engine = Engine(engine_config)
    agent = Agent(settings, Service(engine))
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, agent.stop)
    try:
        await agent.run()
    finally:
        engine.close()


if __name__ == "__main__":
    sys.exit(main())
