"""kind-config.yaml against kind's v1alpha4 schema, and against what deploy/ expects of the
nodes (kind itself needs Docker or podman with kind's node image, which this machine cannot
pull: the README says so)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from unit.deploy.kind_v1alpha4 import SCHEMA

ROOT = Path(__file__).resolve().parents[3]
WEBSERVER_LABEL = "certfleet.io/webserver"


def kind_config() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
    return loaded


def errors(config: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    return [error.message for error in validator.iter_errors(config)]


def test_kind_config_is_a_valid_v1alpha4_cluster() -> None:
    assert errors(kind_config()) == []


def test_one_control_plane_and_two_webserver_workers() -> None:
    nodes = kind_config()["nodes"]
    assert [node["role"] for node in nodes] == ["control-plane", "worker", "worker"]
    assert [node.get("labels", {}).get(WEBSERVER_LABEL) for node in nodes] == [None, "true", "true"]


def test_the_layouts_select_the_labelled_nodes() -> None:
    for path in ("deploy/sidecar/webserver.yaml", "deploy/node-agent/daemonset.yaml"):
        (workload,) = (
            d
            for d in yaml.safe_load_all((ROOT / path).read_text())
            if d["kind"] in ("Deployment", "DaemonSet")
        )
        assert workload["spec"]["template"]["spec"]["nodeSelector"] == {WEBSERVER_LABEL: "true"}


def _mutated(change: str) -> dict[str, Any]:
    config = copy.deepcopy(kind_config())
    if change == "unknown field":
        config["nodes"][1]["lables"] = config["nodes"][1].pop("labels")
    elif change == "bool label":
        config["nodes"][1]["labels"][WEBSERVER_LABEL] = True
    elif change == "no control plane":
        config["nodes"] = config["nodes"][1:]
    elif change == "bad role":
        config["nodes"][0]["role"] = "master"
    elif change == "old apiVersion":
        config["apiVersion"] = "kind.sigs.k8s.io/v1alpha3"
    return config


@pytest.mark.parametrize(
    "change", ["unknown field", "bool label", "no control plane", "bad role", "old apiVersion"]
)
def test_the_schema_refuses_what_kind_refuses(change: str) -> None:
    assert errors(_mutated(change)), change
