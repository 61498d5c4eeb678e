#!/usr/bin/env bash
# A parloir cluster on this machine, as it runs in production, without Docker:
# Postgres and Redis (throwaway, free ports, temp dirs), N parloir nodes
# (release build) and HAProxy in front with cookie affinity, all on 127.0.0.1
# and all child processes of this script. Ctrl-C (or the end of COMMAND)
# stops everything it started and deletes the temp dir.
#
# usage: deploy/local-cluster.sh [options] [-- COMMAND [ARG...]]
#   --nodes N        parloir nodes (default 3)
#   --base-port P    HAProxy listens on P, nodes on P+1..P+N (default 4000)
#   --redis-cluster  a three-master Redis Cluster (loopback, no replicas) instead
#                    of one Redis: REDIS_URL=redis-cluster://...
#   --no-redis       nodes without REDIS_URL: single-node Postgres mode, each node
#                    on its own (no cross-node fan-out); exercises the plumbing only
#   --no-build       use the existing target/release/parloir
#   --keep           keep the temp dir (logs, data) after exit
#   --quiet          do not follow the node logs on the terminal
#   -- COMMAND       run COMMAND once the cluster is ready, with PARLOIR_URL,
#                    PARLOIR_NODE_URLS, JWT_SECRET, DATABASE_URL, REDIS_URL exported;
#                    then stop everything and exit with its status
# env:  LOG_FORMAT (default text), RUST_LOG, CARGO_BUILD_JOBS (default 2),
#       OTEL_EXPORTER_OTLP_ENDPOINT (passed to the nodes when set).
# Needs: Postgres server binaries, redis-server, haproxy, curl (apt-installed when missing).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$(pwd)

nodes=3
base_port=4000
use_redis=1
redis_cluster=
build=1
keep=
quiet=
command=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --nodes) nodes=${2:?--nodes needs a number}; shift 2 ;;
    --base-port) base_port=${2:?--base-port needs a port}; shift 2 ;;
    --no-redis) use_redis=; shift ;;
    --redis-cluster) redis_cluster=1; shift ;;
    --no-build) build=; shift ;;
    --keep) keep=1; shift ;;
    --quiet) quiet=1; shift ;;
    --) shift; command=("$@"); break ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 64 ;;
  esac
done
[[ $nodes =~ ^[1-9][0-9]?$ ]] || { echo "--nodes must be 1 to 99" >&2; exit 64; }
if ! [[ $base_port =~ ^[0-9]+$ ]] || ((base_port < 1024 || base_port + nodes > 65535)); then
  echo "--base-port must be >= 1024 and leave room for $nodes node ports below 65536" >&2
  exit 64
fi

log() { printf '[local-cluster] %s\n' "$*" >&2; }

# --- tools -----------------------------------------------------------------------------------

# shellcheck source=scripts/lib/throwaway.sh
source "$repo/scripts/lib/throwaway.sh"

missing=()
pg_bin=$(pg_bin_dir)
[[ -n $pg_bin ]] || missing+=(postgresql)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v haproxy >/dev/null || missing+=(haproxy)
command -v curl >/dev/null || missing+=(curl)
if [[ ${#missing[@]} -gt 0 ]]; then
  log "installing ${missing[*]} (apt)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  pg_bin=$(pg_bin_dir)
fi
[[ -n $pg_bin ]] || { log "initdb/pg_ctl not found"; exit 1; }

port_free() {
  python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is no conflict
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
PY
}

lb_port=$base_port
node_ports=()
for ((i = 1; i <= nodes; i++)); do
  node_ports+=($((base_port + i)))
done
for p in "$lb_port" "${node_ports[@]}"; do
  port_free "$p" || { log "port $p is in use: pick another --base-port"; exit 1; }
done

# --- build -----------------------------------------------------------------------------------

bin=${CARGO_TARGET_DIR:-$repo/target}/release/parloir
if [[ -n $build ]]; then
  log "cargo build --release --bin parloir"
  cargo build --release --bin parloir -j "${CARGO_BUILD_JOBS:-2}"
fi
[[ -x $bin ]] || { log "$bin is missing (drop --no-build)"; exit 1; }

# --- process bookkeeping ---------------------------------------------------------------------

tmp=$(mktemp -d "${TMPDIR:-/tmp}/parloir-cluster.XXXXXX")
chmod 755 "$tmp" # the postgres user must reach its data dir inside
mkdir -p "$tmp/logs"
as_postgres=()
pg_started=
redis_pid=
redis_cluster_pids=()
lb_pid=
tail_pid=
node_pids=()

stop_pid() { # PID SECONDS: SIGTERM, then SIGKILL after SECONDS
  local pid=$1 secs=$2 i
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < secs * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local status=$? pid
  trap - EXIT INT TERM
  log "stopping"
  [[ -n $tail_pid ]] && stop_pid "$tail_pid" 1
  [[ -n $lb_pid ]] && stop_pid "$lb_pid" 5
  # Nodes first (they drain: readiness 503, sockets closed, exit 0), then what they use.
  for pid in "${node_pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${node_pids[@]}"; do
    stop_pid "$pid" 20
  done
  [[ -n $redis_pid ]] && stop_pid "$redis_pid" 5
  for pid in "${redis_cluster_pids[@]}"; do
    stop_pid "$pid" 5
  done
  if [[ -n $pg_started ]]; then
    "${as_postgres[@]}" "$pg_bin/pg_ctl" -D "$tmp/pg/data" -m fast -w -t 20 stop >/dev/null 2>&1 \
      || "${as_postgres[@]}" "$pg_bin/pg_ctl" -D "$tmp/pg/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  if [[ -n $keep ]]; then
    log "kept $tmp (logs in $tmp/logs)"
  else
    rm -rf "$tmp"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Children run in their own session (setsid), so a Ctrl-C reaches only this
# script, which then stops them in order (nodes before Redis and Postgres).
spawn() { # LOGFILE CMD...: start CMD in the background; its PID in $spawned
  local logfile=$1
  shift
  setsid "$@" >"$logfile" 2>&1 </dev/null &
  spawned=$!
}

# --- Postgres --------------------------------------------------------------------------------

mkdir -p "$tmp/pg/sock"
if [[ $EUID -eq 0 ]]; then
  # initdb refuses to run as root: the cluster belongs to the postgres user.
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin postgres
  chown -R postgres: "$tmp/pg"
  as_postgres=(runuser -u postgres --)
fi
log "postgres: initdb ($("$pg_bin/postgres" --version))"
"${as_postgres[@]}" "$pg_bin/initdb" -D "$tmp/pg/data" -U postgres --auth=trust \
  --encoding=UTF8 --locale=C --no-sync >"$tmp/logs/initdb.log" 2>&1 \
  || { cat "$tmp/logs/initdb.log" >&2; exit 1; }
pg_port=$(free_port)
pg_started=1
setsid "${as_postgres[@]}" "$pg_bin/pg_ctl" -D "$tmp/pg/data" -l "$tmp/pg/server.log" -w -t 30 \
  -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $tmp/pg/sock -c fsync=off -c synchronous_commit=off" \
  start >/dev/null </dev/null || { tail -n 20 "$tmp/pg/server.log" >&2; exit 1; }
"$pg_bin/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres parloir
database_url="postgres://postgres@127.0.0.1:$pg_port/parloir"
log "postgres: $database_url"

# --- Redis -----------------------------------------------------------------------------------

redis_url=
if [[ -n $use_redis && -n $redis_cluster ]]; then
  # Three masters, client and cluster-bus ports chosen free; a lost shard
  # leaves the others serving.
  cluster_ports=()
  for i in 1 2 3; do
    port=$(free_port)
    bus=$(free_port)
    mkdir -p "$tmp/redis-cluster/$i"
    spawn "$tmp/logs/redis-cluster-$i.log" redis-server --port "$port" --cluster-port "$bus" \
      --bind 127.0.0.1 --cluster-enabled yes --cluster-config-file "$tmp/redis-cluster/$i/nodes.conf" \
      --cluster-node-timeout 2000 --cluster-require-full-coverage no \
      --save "" --appendonly no --daemonize no --dir "$tmp/redis-cluster/$i"
    redis_cluster_pids+=("$spawned")
    cluster_ports+=("$port")
    for ((j = 0; j < 100; j++)); do
      [[ $(redis-cli -p "$port" ping 2>/dev/null) == PONG ]] && break
      kill -0 "$spawned" 2>/dev/null || { cat "$tmp/logs/redis-cluster-$i.log" >&2; exit 1; }
      sleep 0.05
    done
  done
  redis-cli --cluster create "${cluster_ports[@]/#/127.0.0.1:}" --cluster-replicas 0 \
    --cluster-yes >"$tmp/logs/redis-cluster-create.log" 2>&1 \
    || { cat "$tmp/logs/redis-cluster-create.log" >&2; exit 1; }
  for ((j = 0; j < 200; j++)); do
    ok=1
    for port in "${cluster_ports[@]}"; do
      redis-cli -p "$port" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || ok=
    done
    [[ -n $ok ]] && break
    sleep 0.05
  done
  [[ -n $ok ]] || { log "the Redis Cluster did not reach cluster_state:ok"; exit 1; }
  redis_url="redis-cluster://127.0.0.1:${cluster_ports[0]}?node=127.0.0.1:${cluster_ports[1]}&node=127.0.0.1:${cluster_ports[2]}"
  log "redis cluster: $redis_url ($(redis-server --version | cut -d' ' -f3), 3 masters)"
elif [[ -n $use_redis ]]; then
  redis_port=$(free_port)
  mkdir -p "$tmp/redis"
  spawn "$tmp/logs/redis.log" redis-server --save "" --appendonly no --port "$redis_port" \
    --bind 127.0.0.1 --daemonize no --dir "$tmp/redis"
  redis_pid=$spawned
  for ((i = 0; i < 100; i++)); do
    [[ $(redis-cli -p "$redis_port" ping 2>/dev/null) == PONG ]] && break
    kill -0 "$redis_pid" 2>/dev/null || { cat "$tmp/logs/redis.log" >&2; exit 1; }
    sleep 0.05
  done
  redis_url="redis://127.0.0.1:$redis_port"
  log "redis: $redis_url ($(redis-server --version | cut -d' ' -f3))"
fi

# --- parloir nodes ---------------------------------------------------------------------------

# Generated per run, never stored outside the temp dir.
jwt_secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')

node_env=(
  "DATABASE_URL=$database_url"
  "JWT_SECRET=$jwt_secret"
  "LOG_FORMAT=${LOG_FORMAT:-text}"
  "RUST_LOG=${RUST_LOG:-info}"
  "OTEL_SERVICE_NAME=${OTEL_SERVICE_NAME:-parloir}"
  "PARLOIR_DRAIN_GRACE_SECS=${PARLOIR_DRAIN_GRACE_SECS:-5}"
)
unset_env=(-u REDIS_URL -u PARLOIR_BIND -u PARLOIR_NODE_ID -u PARLOIR_DATA_DIR)
[[ -n $redis_url ]] && node_env+=("REDIS_URL=$redis_url")

# Like the Helm chart's pre-install Job: migrate once, then nodes start without migrating.
log "parloir migrate"
env "${unset_env[@]}" "${node_env[@]}" "PARLOIR_DATA_DIR=$tmp/migrate" "$bin" migrate \
  >"$tmp/logs/migrate.log" 2>&1 || { cat "$tmp/logs/migrate.log" >&2; exit 1; }

for ((i = 1; i <= nodes; i++)); do
  port=${node_ports[i - 1]}
  mkdir -p "$tmp/n$i"
  spawn "$tmp/logs/n$i.log" env "${unset_env[@]}" "${node_env[@]}" \
    "PARLOIR_NODE_ID=n$i" "PARLOIR_BIND=127.0.0.1:$port" "PARLOIR_DATA_DIR=$tmp/n$i" \
    "PARLOIR_MIGRATE_ON_START=false" "OTEL_RESOURCE_ATTRIBUTES=service.instance.id=n$i,deployment.environment=local" \
    "$bin" serve
  node_pids+=("$spawned")
done

wait_ready() { # NAME URL PID
  local name=$1 url=$2 pid=$3 i
  for ((i = 0; i < 600; i++)); do
    if curl -fsS -o /dev/null --max-time 2 "$url/readyz" 2>/dev/null; then
      return 0
    fi
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
      log "$name exited before it was ready; its log:"
      tail -n 30 "$tmp/logs/$name.log" >&2
      return 1
    fi
    sleep 0.1
  done
  log "$name is not ready after 60 s; its log:"
  tail -n 30 "$tmp/logs/$name.log" >&2
  return 1
}
for ((i = 1; i <= nodes; i++)); do
  wait_ready "n$i" "http://127.0.0.1:${node_ports[i - 1]}" "${node_pids[i - 1]}"
done
log "$nodes nodes ready"

# --- HAProxy ---------------------------------------------------------------------------------

servers=()
for ((i = 1; i <= nodes; i++)); do
  servers+=("n$i=127.0.0.1:${node_ports[i - 1]}")
done
sh deploy/render-haproxy.sh deploy/haproxy.cfg.tmpl "127.0.0.1:$lb_port" "${servers[@]}" >"$tmp/haproxy.cfg"
haproxy -c -q -f "$tmp/haproxy.cfg"
spawn "$tmp/logs/haproxy.log" haproxy -db -f "$tmp/haproxy.cfg"
lb_pid=$spawned
# ready once its health checks have seen a node up
wait_ready haproxy "http://127.0.0.1:$lb_port" "$lb_pid"

# --- ready -----------------------------------------------------------------------------------

lb_url="http://127.0.0.1:$lb_port"
node_urls=()
for p in "${node_ports[@]}"; do
  node_urls+=("http://127.0.0.1:$p")
done
cat >"$tmp/cluster.env" <<EOF
export PARLOIR_URL=$lb_url
export PARLOIR_NODE_URLS="${node_urls[*]}"
export JWT_SECRET=$jwt_secret
export DATABASE_URL=$database_url
export REDIS_URL=$redis_url
EOF

if [[ ${#command[@]} -gt 0 ]]; then
  export PARLOIR_URL=$lb_url PARLOIR_NODE_URLS="${node_urls[*]}" JWT_SECRET=$jwt_secret \
    DATABASE_URL=$database_url REDIS_URL=$redis_url
  log "running: ${command[*]}"
  status=0
  "${command[@]}" || status=$?
  log "command exited with $status"
  exit "$status"
fi

mode="cluster mode: Postgres + Redis"
[[ -n $redis_url ]] || mode="NO Redis: every node is independent (no cross-node fan-out)"
cat <<EOF

parloir local cluster: $nodes nodes, $mode
  load balancer  $lb_url   (Socket.IO: $lb_url/messaging, HTTP API: $lb_url/api/v1)
                 cookie PARLOIR_NODE keeps a client on one node; /readyz checks every 2 s
$(for ((i = 1; i <= nodes; i++)); do printf '  %-14s %s   (/readyz, /metrics)\n' "node n$i" "${node_urls[i - 1]}"; done)
  postgres       $database_url
  redis          ${redis_url:-(none)}
  logs           $tmp/logs/
  environment    source $tmp/cluster.env

Mint a token that every node accepts:
  JWT_SECRET=$jwt_secret $bin token --user alice --role client --name Alice

Try it:
  A=\$(JWT_SECRET=$jwt_secret $bin token --user alice --name Alice)
  curl -s -X POST $lb_url/api/v1/conversations -H "Authorization: Bearer \$A" \\
       -H 'Content-Type: application/json' -d '{"participantIds":["bob"]}'

Ctrl-C stops everything.
EOF

if [[ -z $quiet ]]; then
  tail -n 0 -F "$tmp"/logs/n*.log &
  tail_pid=$!
fi

# Report nodes that exit (e.g. killed to try fail-over); keep the rest running.
declare -A reported=()
while sleep 2; do
  for ((i = 1; i <= nodes; i++)); do
    pid=${node_pids[i - 1]}
    if [[ -z ${reported[$i]:-} ]] && ! kill -0 "$pid" 2>/dev/null; then
      st=0
      wait "$pid" 2>/dev/null || st=$?
      log "node n$i (pid $pid) exited with status $st"
      reported[$i]=1
    fi
  done
  if ! kill -0 "$lb_pid" 2>/dev/null; then
    log "haproxy exited; stopping"
    exit 1
  fi
done
