"""`python -m gossamer.proxy CONFIG_JSON AGENT_URL LOG_LEVEL`: the proxy process itself.

`gossamer connect proxy` checks the flags and the registration (exit 2
naming what is wrong), then replaces itself with this module (`os.execv`,
same pid, so signals and systemd see one process). Starting afresh keeps the
CLI's imports (rich, every subcommand: ~14 MiB) out of a long-running sidecar.
"""

from __future__ import annotations

import logging
import sys

from gossamer.proxy.config import ConfigError, config_from_json
from gossamer.proxy.runtime import serve


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m gossamer.proxy CONFIG_JSON AGENT_URL LOG_LEVEL", file=sys.stderr)
        return 2
    try:
        config = config_from_json(argv[0])
    except ConfigError as exc:
        print(f"gossamer proxy: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=argv[2].upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")  # fmt: skip
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; asyncio works too
        import asyncio

        return asyncio.run(serve(config, argv[1]))
    return uvloop.run(serve(config, argv[1]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
