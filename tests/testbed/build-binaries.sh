#!/usr/bin/env bash
# Builds the test bed's servers from pinned upstream Go modules (versions.env) into a cache outside
# the work tree: kube-apiserver and kubectl, etcd, versitygw (S3) and a current pebble (named
# pebble-VERSION, beside Debian's /usr/bin/pebble). A binary already in the cache is reused, so a
# second run builds nothing. Prints the cache folder of this version set.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache=${CERTFLEET_TESTBED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/certfleet-testbed}
bin_dir=$cache/bin/kubernetes-$KUBERNETES_VERSION-etcd-$ETCD_VERSION-versitygw-$VERSITYGW_VERSION
src_dir=$cache/src
mkdir -p "$bin_dir" "$src_dir"

export GOTOOLCHAIN=local GOFLAGS=-mod=mod

log() { echo "build-binaries: $*" >&2; }

# One builder at a time: concurrent test runs share the cache.
exec 9>"$cache/.lock"
flock 9

# Writes go.mod for a wrapper module that requires k8s.io/kubernetes and pins every staging module
# (k8s.io/kubernetes replaces them with local folders, which a dependent module cannot see).
write_kubernetes_go_mod() {
  local dir=$1 upstream_mod staging_version
  upstream_mod=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["GoMod"])')
  staging_version=v0.${KUBERNETES_VERSION#v1.}
  {
    echo "module certfleet.test/testbed/kubernetes"
    echo
    echo "go $(go env GOVERSION | sed -E 's/^go([0-9]+\.[0-9]+).*/\1/')"
    echo
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    echo
    echo "replace ("
    sed -nE 's#^[[:space:]]*(k8s\.io/[^[:space:]]+) => \./staging/src/.*$#\t\1 => \1 '"$staging_version"'#p' "$upstream_mod"
    echo ")"
  } >"$dir/go.mod"
  if ! grep -q 'k8s.io/api => ' "$dir/go.mod"; then
    log "no staging replace lines found in $upstream_mod"
    exit 1
  fi
}

# build NAME MODULE_DIR PACKAGE [LDFLAGS]: go build into a temporary file, then move it in place,
# so an interrupted build never leaves a broken binary in the cache.
build() {
  local name=$1 dir=$2 package=$3 ldflags=${4:-} started
  if [ -x "$bin_dir/$name" ]; then
    return
  fi
  started=$(date +%s)
  log "building $name (this takes minutes on a cold cache)"
  (cd "$dir" && go build -trimpath -ldflags "-s -w $ldflags" -o "$bin_dir/.$name.partial" "$package")
  mv "$bin_dir/.$name.partial" "$bin_dir/$name"
  log "built $name in $(($(date +%s) - started)) s"
}

need_kubernetes=false
for name in kube-apiserver kubectl; do [ -x "$bin_dir/$name" ] || need_kubernetes=true; done
if $need_kubernetes; then
  dir=$src_dir/kubernetes-$KUBERNETES_VERSION
  mkdir -p "$dir"
  cp -r "$here/gomod/kube-apiserver" "$here/gomod/kubectl" "$dir/"
  write_kubernetes_go_mod "$dir"
  (cd "$dir" && go mod tidy)
  version_flags=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    minor=${KUBERNETES_VERSION#v1.}
    version_flags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=${minor%%.*}"
  done
  build kube-apiserver "$dir" ./kube-apiserver "$version_flags"
  build kubectl "$dir" ./kubectl "$version_flags"
fi

if [ ! -x "$bin_dir/etcd" ]; then
  dir=$src_dir/etcd-$ETCD_VERSION
  mkdir -p "$dir"
  cp -r "$here/gomod/etcd" "$dir/"
  printf 'module certfleet.test/testbed/etcd\n\ngo %s\n\nrequire go.etcd.io/etcd/server/v3 %s\n' \
    "$(go env GOVERSION | sed -E 's/^go([0-9]+\.[0-9]+).*/\1/')" "$ETCD_VERSION" >"$dir/go.mod"
  (cd "$dir" && go mod tidy)
  build etcd "$dir" ./etcd
fi

if [ ! -x "$bin_dir/versitygw" ]; then
  started=$(date +%s)
  log "building versitygw"
  GOBIN="$bin_dir/.gobin" go install -trimpath -ldflags "-s -w" \
    "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
  mv "$bin_dir/.gobin/versitygw" "$bin_dir/versitygw"
  rmdir "$bin_dir/.gobin"
  log "built versitygw in $(($(date +%s) - started)) s"
fi

# Versioned name in the same folder: a new pebble pin does not rebuild kube-apiserver.
pebble=pebble-$PEBBLE_VERSION
if [ ! -x "$bin_dir/$pebble" ]; then
  started=$(date +%s)
  log "building $pebble"
  rm -rf "$bin_dir/.gobin-pebble"
  GOBIN="$bin_dir/.gobin-pebble" go install -trimpath -ldflags "-s -w -X main.version=$PEBBLE_VERSION" \
    "github.com/letsencrypt/pebble/v2/cmd/pebble@$PEBBLE_VERSION"
  mv "$bin_dir/.gobin-pebble/pebble" "$bin_dir/$pebble"
  rmdir "$bin_dir/.gobin-pebble"
  log "built $pebble in $(($(date +%s) - started)) s"
fi

echo "$bin_dir"
