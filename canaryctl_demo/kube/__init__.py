"""A Kubernetes API emulator for tests and the demo: kmock's HTTP server with our object store."""

from canaryctl_demo.kube.emulator import (
    BUILTIN_KINDS,
    Emulator,
    LoggedRequest,
    Served,
    api_client,
    serve,
)
from canaryctl_demo.kube.store import ApiError, Kind, Store

__all__ = [
    "BUILTIN_KINDS",
    "ApiError",
    "Emulator",
    "Kind",
    "LoggedRequest",
    "Served",
    "Store",
    "api_client",
    "serve",
]
