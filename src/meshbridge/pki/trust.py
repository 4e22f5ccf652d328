"""Which roots the mesh trusts and which one signs: root rotation as a small state machine.

Replacing a root in one step breaks the mesh: a cluster whose ``cacerts`` already carries the
new root rejects workloads of a cluster still on the old one. So a rotation walks three phases,
and every cluster gets each phase's ``cacerts`` before the next phase begins::

    steady (0)   signing: active          trusted: active
      begin  ->  phase 1                  trusted: active + next   intermediates unchanged
      advance -> phase 2  signing: next   trusted: active + next   intermediates re-issued
      finish ->  steady   signing: next   trusted: next            old root dropped (phase 3)

In phase 1 every cluster learns the new root while still issuing under the old one; in phase 2
intermediates move to the new root while both are still trusted, so old and new workload
certificates verify everywhere; after finish only the new root is left. ``abort`` undoes a
phase 1 that has not advanced.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from meshbridge.errors import PKIError, StateError

__all__ = ["PHASE_TEXT", "Trust"]

PHASE_TEXT = {
    0: "no rotation in progress",
    1: "phase 1 of 3: new root trusted everywhere, intermediates still under the old root",
    2: "phase 2 of 3: intermediates under the new root, old and new roots trusted",
}


@dataclass(frozen=True)
class Trust:
    """Ids (``chain.cert_id``) of the active root and, during a rotation, the next one."""

    active: str
    next: str | None = None
    phase: int = 0

    @property
    def signing(self) -> str:
        """The root whose key signs new cluster intermediates."""
        return self.next if self.phase == 2 and self.next else self.active

    @property
    def trusted(self) -> tuple[str, ...]:
        """Roots every cluster's root-cert.pem carries, old first."""
        return (self.active, self.next) if self.next else (self.active,)

    @property
    def rotating(self) -> bool:
        return self.phase != 0

    def begin(self, next_id: str) -> Trust:
        if self.rotating:
            raise PKIError(
                f"a root rotation is already in progress ({PHASE_TEXT[self.phase]}); "
                "advance, finish or abort it first"
            )
        if next_id == self.active:
            raise PKIError("the new root is the current root")
        return Trust(active=self.active, next=next_id, phase=1)

    def advance(self) -> Trust:
        if self.phase != 1:
            raise PKIError(
                "advance moves phase 1 to phase 2; "
                + (
                    "start a rotation with 'rotate-root begin'"
                    if self.phase == 0
                    else "the rotation is already in phase 2: 'rotate-root finish' is next"
                )
            )
        return replace(self, phase=2)

    def finish(self) -> Trust:
        if self.phase != 2:
            raise PKIError(
                "finish drops the old root after phase 2; "
                + (
                    "no rotation is in progress"
                    if self.phase == 0
                    else "run 'rotate-root advance' first (and apply its cacerts everywhere)"
                )
            )
        assert self.next is not None
        return Trust(active=self.next)

    def abort(self) -> Trust:
        if self.phase != 1:
            raise PKIError(
                "only a rotation in phase 1 can be aborted"
                + ("" if self.phase == 0 else ": intermediates already moved to the new root")
            )
        return Trust(active=self.active)

    def to_json(self) -> bytes:
        body = {"active": self.active, "next": self.next, "phase": self.phase}
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Trust:
        try:
            body = json.loads(data)
            trust = cls(active=str(body["active"]), next=body.get("next"), phase=int(body["phase"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise StateError(
                f"the stored root trust record is damaged ({type(exc).__name__})"
            ) from None
        if trust.phase not in PHASE_TEXT or (trust.phase != 0) != (trust.next is not None):
            raise StateError("the stored root trust record is inconsistent")
        return trust
