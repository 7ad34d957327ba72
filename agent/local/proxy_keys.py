"""A registration's proxy keys, checked when it is registered. Pure.

`Proxy.Config` is free-form in Consul, and stays so here, except for the
keys gossamer's own proxy reads (protocol, header limits, timeouts, bind and
metrics addresses, its flags): a bad one is a 400 naming it at registration,
rather than a sidecar that exits 2 later, far from whoever wrote it. So is
an exposed path on the port of the metrics listener those keys name (the
proxy refuses two listeners on one port; the catalog knows nothing of
metrics to check it, registration_expose.py).
"""

from __future__ import annotations

from typing import Any

from gossamer.catalog.model import Service
from gossamer.catalog.registration import RegistrationError, ServiceRegistration
from gossamer.proxy.config import DEFAULT_INBOUND_BIND, share_port
from gossamer.proxy.config_error import ConfigError
from gossamer.proxy.config_metrics import metrics_addr_of
from gossamer.proxy.config_registration import check_keys


def check_proxy_keys(reg: ServiceRegistration) -> None:
    """RegistrationError naming the first bad proxy key of the service's or sidecar's proxy."""
    for service, where in ((reg.service, "Proxy"), (reg.sidecar, "Connect.SidecarService.Proxy")):
        if service is None or not service.proxy:
            continue
        try:
            check_keys(service.proxy, where)
            _expose_apart(service, where)
        except ConfigError as exc:
            raise RegistrationError(exc.where, str(exc)[len(exc.where) + 2 :]) from None


def _expose_apart(service: Service, where: str) -> None:
    """ConfigError when an exposed path would listen where the metrics listener does."""
    paths: list[Any] = (service.proxy.get("Expose") or {}).get("Paths") or []
    options = service.proxy.get("Config") or {}
    addr = metrics_addr_of(options, f"{where}.Config") if paths else ""
    if not addr:
        return
    host, _, port = addr.rpartition(":")
    bind = options.get("bind_address") or service.address or DEFAULT_INBOUND_BIND
    for i, p in enumerate(paths):
        if share_port((host.strip("[]"), int(port)), (str(bind), p["ListenerPort"])):
            said = f"{p['ListenerPort']} is the metrics listener's port ({addr})"
            raise ConfigError(f"{where}.Expose.Paths[{i}].ListenerPort", said)
