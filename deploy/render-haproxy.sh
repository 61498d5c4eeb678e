#!/bin/sh
# Renders deploy/haproxy.cfg.tmpl on stdout. POSIX sh + awk, so that the same
# script runs on the host (local-cluster.sh) and in the haproxy container
# (docker-compose.yml).
#
# usage: render-haproxy.sh TEMPLATE BIND NAME=HOST:PORT [NAME=HOST:PORT...]
#   e.g. render-haproxy.sh deploy/haproxy.cfg.tmpl 127.0.0.1:8080 n1=127.0.0.1:8081 n2=127.0.0.1:8082
# env:  RESOLVER=IP:PORT adds a resolvers section (Docker's DNS, 127.0.0.11:53)
#       so that restarted containers are found at their new address.
set -eu
[ $# -ge 3 ] || { echo "usage: render-haproxy.sh TEMPLATE BIND NAME=HOST:PORT..." >&2; exit 64; }
template=$1 bind=$2
shift 2
resolve=
if [ -n "${RESOLVER:-}" ]; then
  resolve=" resolvers dns resolve-prefer ipv4"
fi
servers=
for s in "$@"; do
  name=${s%%=*} addr=${s#*=}
  case $name in '' | *[!A-Za-z0-9_-]*) echo "bad server name in '$s'" >&2; exit 64 ;; esac
  servers="$servers    server $name $addr cookie $name$resolve
"
done
awk -v bind="$bind" -v servers="$servers" -v resolver="${RESOLVER:-}" '
  /^[ \t]*@SERVERS@[ \t]*$/ { printf "%s", servers; next }
  !/^[ \t]*#/ { gsub(/@BIND@/, bind) }
  { print }
  END {
    if (resolver != "") {
      print ""
      print "resolvers dns"
      print "    nameserver docker " resolver
      print "    hold valid 5s"
    }
  }
' "$template"
