"""What a session needs from its gateway, handed over as one immutable bundle."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.config import GatewayConfig
    from gateway.front.account_requests import AccountGate
    from gateway.front.flusher import Flusher
    from gateway.front.registry import Registry
    from gateway.metrics import GatewayMetrics
    from gateway.redis.broker import Broker
    from gateway.subscriber import Subscriber


@dataclass(frozen=True, slots=True)
class Services:
    config: GatewayConfig
    broker: Broker
    registry: Registry
    subscriber: Subscriber
    flusher: Flusher
    metrics: GatewayMetrics
    stopping: Callable[[], bool]
    accounts: AccountGate | None = None
    """Accounts and stored conversations; None: every name is a guest's and
    dms are live-only, as in protocol v1."""
