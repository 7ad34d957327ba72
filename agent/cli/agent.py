"""`gossamer agent`: load the config, set up logging, run until told to stop."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable

from gossamer.agent.config import AgentConfig, ConfigError, load_agent_config
from gossamer.agent.lifecycle.logs import setup_logging
from gossamer.agent.lifecycle.runtime import Agent
from gossamer.proxy.open_files import raise_open_files

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
    raise_open_files()  # every parked blocking query holds a connection (open_files.py)

    def reload_config() -> AgentConfig:
        return load_agent_config(args)

    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        return runner.run(Agent(config, reload_config).run())


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed: it reads many datagrams per wake-up, which DNS needs.

    `GOSSAMER_EVENT_LOOP=asyncio` keeps the standard loop (for debugging).
    """
    if os.environ.get("GOSSAMER_EVENT_LOOP", "") == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
