"""Single-gateway tests share the root fixtures (``start_gateway``, ``gateway``, ``connect``)."""

from tests.conftest import Connect, StartGateway

__all__ = ["Connect", "StartGateway"]
