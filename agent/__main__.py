import sys

from gossamer.agent.cli.main import main

sys.exit(main())
