"""kind's cluster configuration, v1alpha4, as a JSON Schema: every field of kind's documented
Cluster type (kind.sigs.k8s.io/docs/user/configuration, the Go types of
sigs.k8s.io/kind/pkg/apis/config/v1alpha4). Unknown fields are errors, as in kind, which
decodes its configuration strictly; label values are strings (a bare `true` is a YAML bool,
which kind refuses)."""

from __future__ import annotations

from typing import Any

_strings = {"type": "array", "items": {"type": "string"}}
_string_map = {"type": "object", "additionalProperties": {"type": "string"}}
_port = {"type": "integer", "minimum": -1, "maximum": 65535}  # -1: a random host port

_patch_json6902 = {
    "type": "object",
    "additionalProperties": False,
    "required": ["version", "kind", "patch"],
    "properties": {
        "group": {"type": "string"},
        "version": {"type": "string"},
        "kind": {"type": "string"},
        "patch": {"type": "string"},
    },
}

_mount = {
    "type": "object",
    "additionalProperties": False,
    "required": ["hostPath", "containerPath"],
    "properties": {
        "containerPath": {"type": "string"},
        "hostPath": {"type": "string"},
        "readOnly": {"type": "boolean"},
        "selinuxRelabel": {"type": "boolean"},
        "propagation": {"enum": ["None", "HostToContainer", "Bidirectional"]},
    },
}

_port_mapping = {
    "type": "object",
    "additionalProperties": False,
    "required": ["containerPort"],
    "properties": {
        "containerPort": _port,
        "hostPort": _port,
        "listenAddress": {"type": "string"},
        "protocol": {"enum": ["TCP", "UDP", "SCTP"]},
    },
}

_node = {
    "type": "object",
    "additionalProperties": False,
    "required": ["role"],
    "properties": {
        "role": {"enum": ["control-plane", "worker"]},
        "image": {"type": "string"},
        "labels": _string_map,
        "extraMounts": {"type": "array", "items": _mount},
        "extraPortMappings": {"type": "array", "items": _port_mapping},
        "kubeadmConfigPatches": _strings,
        "kubeadmConfigPatchesJSON6902": {"type": "array", "items": _patch_json6902},
    },
}

_networking = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "ipFamily": {"enum": ["ipv4", "ipv6", "dual"]},
        "apiServerPort": _port,
        "apiServerAddress": {"type": "string"},
        "podSubnet": {"type": "string"},
        "serviceSubnet": {"type": "string"},
        "disableDefaultCNI": {"type": "boolean"},
        "kubeProxyMode": {"enum": ["iptables", "ipvs", "nftables", "none"]},
        "dnsSearch": _strings,
    },
}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["kind", "apiVersion"],
    "properties": {
        "kind": {"const": "Cluster"},
        "apiVersion": {"const": "kind.x-k8s.io/v1alpha4"},
        "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "nodes": {
            "type": "array",
            "items": _node,
            # kind needs a control plane; it takes the first control-plane node as the primary.
            "contains": {"properties": {"role": {"const": "control-plane"}}},
        },
        "networking": _networking,
        "featureGates": {"type": "object", "additionalProperties": {"type": "boolean"}},
        "runtimeConfig": _string_map,
        "kubeadmConfigPatches": _strings,
        "kubeadmConfigPatchesJSON6902": {"type": "array", "items": _patch_json6902},
        "containerdConfigPatches": _strings,
        "containerdConfigPatchesJSON6902": _strings,
    },
}
