"""`gossamer agent`: load the config, set up logging, run until told to stop."""

from __future__ import annotations

import argparse
import asyncio
import sys

from gossamer.agent.config import AgentConfig, ConfigError, load_agent_config
from gossamer.agent.logs import setup_logging
from gossamer.agent.runtime import Agent

EXIT_CONFIG = 2


def run_agent(args: argparse.Namespace) -> int:
    try:
        config = load_agent_config(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"gossamer agent: config error: {problem}", file=sys.stderr)
        print("gossamer agent: not started", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(config.log_level, config.log_json)

    def reload_config() -> AgentConfig:
        return load_agent_config(args)

    return asyncio.run(Agent(config, reload_config).run())
