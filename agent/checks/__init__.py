"""Health checks run by the local agent (HTTP, TCP, TTL, script, alias).

`status` is the pure core (thresholds, output caps, TTL expiry, alias
aggregation, the critical-service reaper's decision); `probes` does the I/O
of one check run; `runner` schedules probes and reports changes. `spec`
holds the one frozen definition the runner takes.
"""
