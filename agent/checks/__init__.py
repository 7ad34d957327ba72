"""Health checks run by the local agent (HTTP, TCP, TTL, script, alias).

`status` is the pure core (thresholds, output caps, TTL expiry, alias
aggregation, the critical-service reaper's decision); `probes` does the I/O
of one check run; `runner` schedules probes and reports changes. Both read
the one `CheckDefinition` (catalog/check_definition.py) directly; `spec`
derives only what the runner needs from it (effective timeout, interval,
output cap, thresholds) and refuses what it cannot run.
"""
