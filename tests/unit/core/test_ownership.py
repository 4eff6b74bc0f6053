"""Who may act on a location (pure): the owner, a first claimant, or a deliberate handover."""

from __future__ import annotations

import pytest

from certfleet.core.ownership import LocationOwner, OwnerKind, Standing, judge_claim

HERE = "cluster-1"
SHOP = LocationOwner.resource(HERE, "shop", "www", "uid-1")
OTHER = LocationOwner.resource(HERE, "other", "www", "uid-2")
ELSEWHERE = LocationOwner.resource("cluster-2", "shop", "www", "uid-9")
MACHINES = LocationOwner.build_machines("prod")


@pytest.mark.parametrize(
    ("sentence", "claimant", "owner", "exists", "annotation", "standing"),
    [
        ("nobody claimed it: claim it", SHOP, None, None, None, Standing.UNCLAIMED),
        ("it is this resource's", SHOP, SHOP, None, None, Standing.OWNER),
        ("a live owner keeps it", OTHER, SHOP, True, None, Standing.CLAIMED),
        (
            "a live owner keeps it against an annotation",
            OTHER,
            SHOP,
            True,
            "shop/www",
            Standing.CLAIMED,
        ),
        ("a deleted owner needs a person's word", OTHER, SHOP, False, None, Standing.CLAIMED),
        ("a deleted owner, named", OTHER, SHOP, False, "shop/www", Standing.TAKE_OVER),
        ("a deleted owner, another named", OTHER, SHOP, False, "shop/web", Standing.CLAIMED),
        (
            "the same name applied again (a new uid)",
            LocationOwner.resource(HERE, "shop", "www", "uid-3"),
            SHOP,
            False,
            None,
            Standing.TAKE_OVER,
        ),
        (
            "the same name in a rebuilt cluster is the same owner",
            SHOP,
            ELSEWHERE,
            None,
            None,
            Standing.OWNER,
        ),
        (
            "another name of another cluster is another owner",
            OTHER,
            ELSEWHERE,
            None,
            None,
            Standing.CLAIMED,
        ),
        ("another cluster's owner, named", OTHER, ELSEWHERE, None, "shop/www", Standing.TAKE_OVER),
        (
            "build machines of one fleet are one owner",
            MACHINES,
            MACHINES,
            None,
            None,
            Standing.OWNER,
        ),
        (
            "another fleet's build machines",
            LocationOwner.build_machines("staging"),
            MACHINES,
            None,
            None,
            Standing.CLAIMED,
        ),
        ("build machines, named", SHOP, MACHINES, None, "build-machines:prod", Standing.TAKE_OVER),
        (
            "a resource's location, named by build machines",
            MACHINES,
            SHOP,
            None,
            "shop/www",
            Standing.TAKE_OVER,
        ),
    ],
)
def test_the_claim(
    sentence: str,
    claimant: LocationOwner,
    owner: LocationOwner | None,
    exists: bool | None,
    annotation: str | None,
    standing: Standing,
) -> None:
    verdict = judge_claim(claimant, owner, exists, annotation)
    assert verdict.standing is standing, verdict.message
    assert verdict.may_claim is (standing in (Standing.UNCLAIMED, Standing.TAKE_OVER))


def test_a_refusal_names_the_owner_and_the_way_to_take_it_over() -> None:
    message = judge_claim(OTHER, MACHINES, None, None).message
    assert "the build machines 'prod'" in message
    assert "certfleet.io/take-over-from=build-machines:prod" in message


def test_no_namespace_can_pass_for_build_machines() -> None:
    """The handles differ in shape: a namespace has no colon."""
    assert LocationOwner.resource(HERE, "build-machines", "prod", "u").handle != MACHINES.handle


@pytest.mark.parametrize(
    ("kind", "name", "uid"),
    [
        (OwnerKind.RESOURCE, "no-slash", "u"),
        (OwnerKind.RESOURCE, "", "u"),
        (OwnerKind.RESOURCE, "a/b", "u\n"),
        (OwnerKind.BUILD_MACHINES, "a:b", ""),
        (OwnerKind.BUILD_MACHINES, "x" * 64, ""),
        (OwnerKind.RESOURCE, "a/" + "b" * 300, "u"),
    ],
)
def test_an_owner_is_validated(kind: OwnerKind, name: str, uid: str) -> None:
    with pytest.raises(ValueError):
        LocationOwner(kind, name, uid)


def test_the_identity_names_cluster_namespace_name_and_uid() -> None:
    assert SHOP.identity() == "ManagedCertificate:cluster-1/shop/www/uid-1"
    assert MACHINES.identity() == "BuildMachines:prod"
