"""The composition root: build the agent's parts in start order, run them, stop them.

Holds what only a running process needs: the data dir lock, the listening
sockets bound up front, logs, systemd notifications, reload, signals, and the
order in which everything starts and stops. Nothing else in gossamer imports it.
"""
