#!/usr/bin/env bash
# Builds certfleet's image into podman's local storage, without a container registry:
#   1. podman, runc and debootstrap from Debian (when missing);
#   2. the base, once: a Debian bookworm minbase rootfs (python3, CA certificates) made by
#      debootstrap from the machine's own Debian mirror, imported as $BASE_IMAGE; kept in
#      podman's storage (outside the repo), so later builds skip this step;
#   3. the Containerfile, with the machine's CA bundle as a build secret for pip.
# Prints the image reference on stdout. IMAGE overrides the reference (localhost/certfleet:dev).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
IMAGE="${IMAGE:-localhost/certfleet:dev}"
BASE_IMAGE="${BASE_IMAGE:-localhost/certfleet-base:bookworm}"
SUITE=bookworm
CA_BUNDLE="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/containers.conf}"

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
log() { echo "build-image: $*" >&2; }

missing=()
for tool in podman runc debootstrap; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  $sudo apt-get update -qq
  # runc named explicitly keeps crun (podman's recommended runtime) out.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    podman runc debootstrap >/dev/null
fi
PATH="$PATH:/usr/sbin:/sbin"

# The first Debian mirror of the machine's apt sources (deb822 or one-line format).
debian_mirror() {
  local uri
  uri="$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri="$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list)"
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

if podman image exists "$BASE_IMAGE"; then
  log "base $BASE_IMAGE is cached"
else
  mirror="$(debian_mirror)"
  log "making the base $BASE_IMAGE with debootstrap from $mirror (once)"
  rootfs="$(mktemp -d)"
  trap '$sudo rm -rf "$rootfs"' EXIT
  $sudo debootstrap --variant=minbase --include=python3,ca-certificates \
    "$SUITE" "$rootfs" "$mirror" >/dev/null
  # Nothing the image does not need: package caches and lists, logs, docs.
  $sudo rm -rf "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
  $sudo tar --numeric-owner -C "$rootfs" -c . \
    | podman import --quiet \
      --change 'CMD ["/bin/sh"]' \
      --message "debootstrap --variant=minbase $SUITE from $mirror" - "$BASE_IMAGE" >/dev/null
fi
# The base by its ID: the build uses exactly the image just checked, whatever the tag says later.
base_id="$(podman image inspect --format '{{.Id}}' "$BASE_IMAGE")"

log "building $IMAGE"
podman build --quiet --network host \
  --secret "id=ca,src=$CA_BUNDLE" \
  --build-arg "BASE_IMAGE=$base_id" \
  --file "$repo/Containerfile" --tag "$IMAGE" "$repo" >/dev/null
echo "$IMAGE"
