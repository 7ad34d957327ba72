"""The composition root: build the agent's parts in start order, run them, stop them.

Holds what only a running process needs: the data dir lock, the listening
sockets bound up front, logs, systemd notifications, reload, signals, and the
order in which everything starts and stops. Nothing else in gossamer imports it.

runtime.py is the root (start/stop order, signals); parts.py opens the parts
in start order into one `Parts`; the jobs around them have a module each:
joins.py, reload.py, version_tag.py (the `cv` serf tag), facade.py (what
the HTTP handlers see), status.py (config in force, readiness), tasks.py.
"""
