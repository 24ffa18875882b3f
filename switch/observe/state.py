"""What the health and metrics endpoint looks at: the running parts of one ``switch run``.

``switch run`` fills this in as it starts (listeners appear as they are bound, the remote
issuers once attached) and moves ``phase`` along, so ``/readyz`` can tell a load balancer
"not yet" before the listeners are bound and "no more" as soon as a stop begins.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from switch.core.service import SwitchCore
from switch.iso8583.remote import RemoteIssuers
from switch.iso8583.server import IsoListener


class Phase(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"


@dataclass
class Observed:
    """The parts of the running switch, read (never changed) by the endpoint."""

    core: SwitchCore
    listeners: list[IsoListener] = field(default_factory=list)
    remotes: RemoteIssuers | None = None
    phase: Phase = Phase.STARTING
