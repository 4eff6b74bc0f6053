"""--trust-bundle: the roots the agent's certificates must chain to (with the system's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from certfleet.agent.config import AgentConfigError, config_from_args
from certfleet.agent.trust import system_roots

from .flags import parse, required
from .pki import ca_pem, roots


def test_without_a_bundle_the_system_roots_alone(key_file: Path) -> None:
    config = config_from_args(parse(*required(key_file)))
    assert config.trust_roots == system_roots() and len(system_roots()) > 50


def test_a_bundle_is_trusted_beside_the_system_roots(key_file: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "roots.pem"
    bundle.write_bytes(ca_pem())
    config = config_from_args(parse(*required(key_file), f"--trust-bundle={bundle}"))
    assert config.trust_roots == (*roots(), *system_roots())
    assert "trust_roots" not in repr(config)


@pytest.mark.parametrize(
    ("content", "problem"),
    [(None, "cannot read the trust bundle"), (b"garbage", "is not a list of PEM certificates")],
    ids=["missing", "garbage"],
)
def test_an_unusable_bundle_is_a_configuration_error(
    key_file: Path, tmp_path: Path, content: bytes | None, problem: str
) -> None:
    bundle = tmp_path / "roots.pem"
    if content is not None:
        bundle.write_bytes(content)
    with pytest.raises(AgentConfigError, match=f"--trust-bundle: .*{problem}"):
        config_from_args(parse(*required(key_file), f"--trust-bundle={bundle}"))
