"""Kubernetes: the sidecar injector (a mutating admission webhook) and pod registration.

Pure cores (annotations.py, patch.py, review.py, registration.py) and thin
shells (server.py for the webhook, agent/cli/k8s.py for the commands).
"""
