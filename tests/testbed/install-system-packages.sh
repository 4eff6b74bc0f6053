#!/usr/bin/env bash
# Installs the test bed's servers that Debian provides, when missing: pebble and pebble-challtestsrv
# (Let's Encrypt's test CA), nginx, apache2, lighttpd (with its OpenSSL module), haproxy, bind9,
# PowerDNS (with its sqlite3 backend), prometheus (for promtool) and wrk (the benchmarks' load). Services are not started:
# the tests start their own instances on free ports.
set -euo pipefail

declare -A package_of=(
  [/usr/bin/pebble]=pebble
  [/usr/bin/pebble-challtestsrv]=pebble
  [/usr/sbin/nginx]=nginx
  [/usr/sbin/apache2]=apache2
  [/usr/sbin/lighttpd]=lighttpd
  [/usr/lib/lighttpd/mod_openssl.so]=lighttpd-mod-openssl
  [/usr/sbin/haproxy]=haproxy
  [/usr/sbin/named]=bind9
  [/usr/bin/nsupdate]=bind9-dnsutils
  [/usr/sbin/pdns_server]=pdns-server
  [/usr/share/doc/pdns-backend-sqlite3/schema.sqlite3.sql]=pdns-backend-sqlite3
  [/usr/bin/promtool]=prometheus
  [/usr/bin/wrk]=wrk
)
missing=()
for path in "${!package_of[@]}"; do
  [ -e "$path" ] || missing+=("${package_of[$path]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "install-system-packages: installing ${missing[*]}" >&2

# Keep package scripts from starting the daemons (exit 101: "action forbidden by policy").
policy=/usr/sbin/policy-rc.d
created_policy=false
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
  $sudo chmod 755 "$policy"
  created_policy=true
fi
cleanup() { if $created_policy; then $sudo rm -f "$policy"; fi; }
trap cleanup EXIT

$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
