"""Consul's HTTP API: routes that parse a request, call a core and render Consul's JSON.

Errors map to statuses once, in the middleware (app.py); blocking queries
park on the live catalog (blocking.py).
"""
