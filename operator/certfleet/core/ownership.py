"""An owner per location, pure: who may act on a (cloudhost, build identifier, domain).

A location of the datastore is served by every node of a fleet, so exactly one thing may
publish to it, order for it, and copy its private key anywhere: its owner. The owner is a
ManagedCertificate (its cluster, namespace, name and uid) or, without a cluster, the build
machines of one fleet (a name their configuration shares, so that several build machines
serving the same certificate all act as one owner).

The first to claim an unclaimed location owns it (a conditional write in the datastore, so of
two claimants exactly one wins). A resource of the same namespace and name in another
cluster (the cluster rebuilt, or a second one sharing the bucket) is the same owner. The
claim passes to another only deliberately:

- the owner, a ManagedCertificate of this cluster, no longer exists (deleted, or replaced by
  another object of its name: another uid) and the claimant is its re-creation (the same
  namespace and name) or names it in ``certfleet.io/take-over-from``;
- the owner cannot be seen from here (another cluster, build machines) and the claimant names
  it in ``certfleet.io/take-over-from``: a person decided.

An owner that still exists here is never taken over: delete it first.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

MAX_OWNER_FIELD = 253
_FIELD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]*")
_BUILD_MACHINES = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


class OwnerKind(enum.StrEnum):
    RESOURCE = "ManagedCertificate"
    BUILD_MACHINES = "BuildMachines"


@dataclass(frozen=True, slots=True)
class LocationOwner:
    """Who owns a location. ``name`` is "namespace/name" for a resource, else the build
    machines' owner name; ``uid`` and ``cluster`` (the kube-system namespace's uid) only for
    a resource."""

    kind: OwnerKind
    name: str
    uid: str = ""
    cluster: str = ""

    def __post_init__(self) -> None:
        for what in ("name", "uid", "cluster"):
            value = getattr(self, what)
            if not isinstance(value, str) or len(value) > MAX_OWNER_FIELD:
                raise ValueError(f"an owner's {what} is a string of at most {MAX_OWNER_FIELD}")
            if value and not _FIELD.fullmatch(value):
                raise ValueError(f"an owner's {what} has characters an owner never has")
        if not self.name:
            raise ValueError("an owner needs a name")
        if self.kind is OwnerKind.RESOURCE and self.name.count("/") != 1:
            raise ValueError("a resource owner's name is namespace/name")
        if self.kind is OwnerKind.BUILD_MACHINES and not _BUILD_MACHINES.fullmatch(self.name):
            raise ValueError(
                "the build machines' owner name is 1 to 63 letters, digits, '.', '_' or '-'"
            )

    @classmethod
    def resource(cls, cluster: str, namespace: str, name: str, uid: str) -> LocationOwner:
        return cls(OwnerKind.RESOURCE, f"{namespace}/{name}", uid, cluster)

    @classmethod
    def build_machines(cls, name: str) -> LocationOwner:
        return cls(OwnerKind.BUILD_MACHINES, name)

    @property
    def handle(self) -> str:
        """What ``certfleet.io/take-over-from`` names: "namespace/name", or
        "build-machines:NAME" (a colon, which no namespace has)."""
        if self.kind is OwnerKind.RESOURCE:
            return self.name
        return f"build-machines:{self.name}"

    def describe(self) -> str:
        if self.kind is OwnerKind.RESOURCE:
            return f"ManagedCertificate {self.name}"
        return f"the build machines {self.name!r}"

    def identity(self) -> str:
        """One line naming the owner exactly (the pointer's ``owner`` field)."""
        if self.kind is OwnerKind.RESOURCE:
            return f"{self.kind}:{self.cluster}/{self.name}/{self.uid}"
        return f"{self.kind}:{self.name}"


def _same_name_elsewhere(claimant: LocationOwner, owner: LocationOwner) -> bool:
    return (
        claimant.kind is OwnerKind.RESOURCE
        and owner.kind is OwnerKind.RESOURCE
        and claimant.name == owner.name
        and claimant.cluster != owner.cluster
    )


class Standing(enum.Enum):
    OWNER = "owner"  # the claim is the claimant's
    UNCLAIMED = "unclaimed"  # nobody claimed it: claim it first
    TAKE_OVER = "take-over"  # the owner is gone or a person handed it over: claim it
    CLAIMED = "claimed"  # another owns it: do nothing there


@dataclass(frozen=True, slots=True)
class ClaimVerdict:
    standing: Standing
    message: str

    @property
    def may_claim(self) -> bool:
        return self.standing in (Standing.UNCLAIMED, Standing.TAKE_OVER)


def judge_claim(
    claimant: LocationOwner,
    owner: LocationOwner | None,
    owner_exists: bool | None,
    take_over_from: str | None,
) -> ClaimVerdict:
    """Whether ``claimant`` may act on a location ``owner`` claimed. ``owner_exists``: does
    the owner still exist (True/False for a resource of this cluster), None when that cannot
    be told from here. ``take_over_from``: the claimant's annotation, if any."""
    if owner is None:
        return ClaimVerdict(Standing.UNCLAIMED, "the location has no owner yet")
    if owner == claimant:
        return ClaimVerdict(Standing.OWNER, "this resource owns the location")
    if _same_name_elsewhere(claimant, owner):
        # A rebuilt cluster (or a second one sharing the bucket) applies the same resource:
        # it is the same owner, as the datastore-first flow wants (reuse, no order).
        return ClaimVerdict(Standing.OWNER, "this resource, by its name, owns the location")
    named = take_over_from is not None and take_over_from.strip() == owner.handle
    if owner_exists is True:
        return ClaimVerdict(
            Standing.CLAIMED,
            f"the location is owned by {owner.describe()}; it can be taken over only once "
            "that resource is deleted",
        )
    if owner_exists is False:
        recreated = (
            claimant.kind is OwnerKind.RESOURCE
            and claimant.cluster == owner.cluster
            and claimant.name == owner.name
        )
        if recreated or named:
            return ClaimVerdict(
                Standing.TAKE_OVER,
                f"took the location over from {owner.describe()}, which no longer exists",
            )
        return ClaimVerdict(
            Standing.CLAIMED,
            f"the location is owned by {owner.describe()}, which no longer exists: annotate "
            f"this resource certfleet.io/take-over-from={owner.handle} to take it over",
        )
    if named:
        return ClaimVerdict(
            Standing.TAKE_OVER,
            f"took the location over from {owner.describe()}, as certfleet.io/take-over-from asks",
        )
    return ClaimVerdict(
        Standing.CLAIMED,
        f"the location is owned by {owner.describe()}, which certfleet cannot see from here: "
        f"annotate this resource certfleet.io/take-over-from={owner.handle} to take it over",
    )
