import sys

from gossamer.agent.cli import main

sys.exit(main())
