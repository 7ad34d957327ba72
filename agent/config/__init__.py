"""Typed, layered config of `gossamer agent`: defaults <- YAML files <- flags.

    parser = argparse.ArgumentParser(prog="gossamer agent")
    add_agent_flags(parser)
    config = load_agent_config(parser.parse_args())  # raises ConfigError

On SIGHUP the agent loads again, logs `diff_configs(old, new)` and applies
the keys in RELOADABLE_KEYS; the others are marked "(needs restart)".
The nested sections `config.dns` and `config.intentions` are DnsConfig and
IntentionsConfig (sections.py); their keys are named `dns.domain` and so on.
"""

from gossamer.agent.config.advertise import pick_advertise_address
from gossamer.agent.config.errors import ConfigError, ConfigProblem
from gossamer.agent.config.flags import add_agent_flags
from gossamer.agent.config.load import load_agent_config
from gossamer.agent.config.reloadable import RELOADABLE_KEYS, diff_configs
from gossamer.agent.config.schema import AgentConfig
from gossamer.agent.config.sections import DnsConfig, IntentionsConfig

__all__ = [
    "RELOADABLE_KEYS",
    "AgentConfig",
    "ConfigError",
    "ConfigProblem",
    "DnsConfig",
    "IntentionsConfig",
    "add_agent_flags",
    "diff_configs",
    "load_agent_config",
    "pick_advertise_address",
]
