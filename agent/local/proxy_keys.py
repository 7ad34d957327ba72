"""A registration's proxy keys, checked when it is registered. Pure.

`Proxy.Config` is free-form in Consul, and stays so here, except for the
keys gossamer's own proxy reads (protocol, header limits, timeouts, bind and
metrics addresses, its flags): a bad one is a 400 naming it at registration,
rather than a sidecar that exits 2 later, far from whoever wrote it.
"""

from __future__ import annotations

from gossamer.catalog.registration import RegistrationError, ServiceRegistration
from gossamer.proxy.config_error import ConfigError
from gossamer.proxy.config_registration import check_keys


def check_proxy_keys(reg: ServiceRegistration) -> None:
    """RegistrationError naming the first bad proxy key of the service's or sidecar's proxy."""
    for service, where in ((reg.service, "Proxy"), (reg.sidecar, "Connect.SidecarService.Proxy")):
        if service is None or not service.proxy:
            continue
        try:
            check_keys(service.proxy, where)
        except ConfigError as exc:
            raise RegistrationError(exc.where, str(exc)[len(exc.where) + 2 :]) from None
