"""Every `gossamer` command: the agent itself and the client commands that talk to it over HTTP."""
