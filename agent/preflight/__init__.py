"""`gossamer check`: pre-flight and health checks of a host and its agent, as `linkerd check`.

Pure judges (`result.py`, `*_checks.py`) turn gathered facts into results;
probes (`host_probe.py`, `agent_probe.py`) gather the facts with I/O and never
raise for a failing target; `render.py` prints them.
"""
