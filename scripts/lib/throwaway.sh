# shellcheck shell=bash
# What scripts/test, scripts/bench and deploy/local-cluster.sh need to start throwaway
# services: sourced, not run.

# The directory of Postgres's server binaries (initdb, pg_ctl, postgres, createdb), or nothing.
pg_bin_dir() {
  local d
  if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
    # through symlinks (e.g. /usr/local/bin/initdb): createdb lives beside the real one
    dirname "$(readlink -f "$(command -v initdb)")"
    return
  fi
  for d in $(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V -r); do
    if [[ -x $d/initdb && -x $d/pg_ctl ]]; then
      echo "$d"
      return
    fi
  done
}

# A loopback TCP port nobody listens on now.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
