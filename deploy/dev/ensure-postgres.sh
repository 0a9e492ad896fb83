#!/usr/bin/env bash
# ensure-postgres.sh makes sure a PostgreSQL server accepts connections on
# 127.0.0.1:$VC_PG_PORT (default 5432) for `make run`, `make test` and friends.
#
# In order, it stops at the first step that applies:
#   1. VC_DATABASE_URL, DATABASE_URL or VC_TEST_DATABASE_URL is set: the caller
#      brought a database; nothing to do.
#   2. Something already accepts connections on 127.0.0.1:PORT: nothing to do.
#   3. A Debian cluster (/etc/postgresql/VERSION/main) is configured for PORT:
#      start it with pg_ctlcluster.
#   4. Otherwise run a private cluster under $VC_DATA_DIR/postgres (default
#      ./.data/postgres), installing Debian's postgresql packages first if no
#      initdb is found. The private cluster listens on 127.0.0.1 only, trusts
#      local and loopback connections only, and keeps synchronous_commit on.
#
# Usage: deploy/dev/ensure-postgres.sh [start|stop|status]   (default: start)
# `stop` and `status` act on the private cluster only; the machine's own
# cluster is never stopped by this script.
#
# Environment:
#   VC_PG_PORT     port to ensure (default 5432)
#   VC_DATA_DIR    the app's data directory (default ./.data at the repo root)
#   VC_PG_DATA     the private cluster's directory (default $VC_DATA_DIR/postgres)
#   VC_PG_WAIT     seconds to wait for the server to accept connections (default 60)
set -euo pipefail

readonly host=127.0.0.1
readonly port=${VC_PG_PORT:-5432}
readonly wait_secs=${VC_PG_WAIT:-60}
readonly action=${1:-start}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
data_dir=${VC_DATA_DIR:-$root/.data}
case $data_dir in /*) ;; *) data_dir=$PWD/$data_dir ;; esac
pgdata=${VC_PG_DATA:-$data_dir/postgres}
case $pgdata in /*) ;; *) pgdata=$PWD/$pgdata ;; esac

log() { printf 'ensure-postgres: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# bindir prints the newest /usr/lib/postgresql/*/bin that has initdb, or nothing.
bindir() {
	local d best=""
	for d in /usr/lib/postgresql/*/bin; do
		[ -x "$d/initdb" ] || continue
		if [ -z "$best" ] || [ "$(basename "$(dirname "$d")")" -gt "$(basename "$(dirname "$best")")" ] 2>/dev/null; then
			best=$d
		fi
	done
	printf '%s' "$best"
}

# ready reports whether a server accepts connections on host:port.
ready() {
	local isready
	isready=$(command -v pg_isready || true)
	if [ -z "$isready" ] && [ -n "$(bindir)" ]; then
		isready=$(bindir)/pg_isready
	fi
	if [ -n "$isready" ] && [ -x "$isready" ]; then
		"$isready" -q -h "$host" -p "$port" -U postgres -d postgres -t 3
		return
	fi
	# No client tools yet: an open TCP port is the best we can tell.
	(exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}

wait_ready() {
	local i
	for ((i = 0; i < wait_secs * 4; i++)); do
		ready && return 0
		sleep 0.25
	done
	return 1
}

# as_root runs a command as root, through sudo when we are not root.
as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null; then
		sudo "$@"
	else
		die "need root to run: $* (install sudo, run as root, or set VC_DATABASE_URL)"
	fi
}

# debian_clusters prints "VERSION NAME" for each configured Debian cluster on our port.
debian_clusters() {
	local conf ver name p
	for conf in /etc/postgresql/*/*/postgresql.conf; do
		[ -f "$conf" ] || continue
		ver=$(basename "$(dirname "$(dirname "$conf")")")
		name=$(basename "$(dirname "$conf")")
		p=$(sed -nE 's/^[[:space:]]*port[[:space:]]*=[[:space:]]*([0-9]+).*/\1/p' "$conf" | tail -n 1)
		[ "${p:-5432}" = "$port" ] && printf '%s %s\n' "$ver" "$name"
	done
}

start_debian_cluster() {
	local ver=$1 name=$2
	log "starting the machine's PostgreSQL cluster $ver/$name on port $port"
	if [ "$(id -un)" = postgres ]; then
		pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start || true
	else
		as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start || true
	fi
}

install_packages() {
	log "no PostgreSQL server binaries found; installing Debian's postgresql packages"
	command -v apt-get >/dev/null || die "apt-get not found: install PostgreSQL yourself or set VC_DATABASE_URL"
	# Installing a server version creates and starts a 'main' cluster on 5432 by
	# default, whose authentication would not be ours. Remember which clusters
	# existed so that the ones the install created can be dropped again.
	local before after c
	before=$(ls -d /etc/postgresql/*/* 2>/dev/null || true)
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >&2
	after=$(ls -d /etc/postgresql/*/* 2>/dev/null || true)
	for c in $after; do
		if ! grep -qxF "$c" <<<"$before"; then
			log "dropping the empty cluster ${c#/etc/postgresql/} that the package install created"
			as_root pg_dropcluster --stop "$(basename "$(dirname "$c")")" "$(basename "$c")" || true
		fi
	done
	[ -n "$(bindir)" ] || die "installed postgresql but found no initdb under /usr/lib/postgresql/*/bin"
}

# resolve_pgdata moves the private cluster out of reach problems: as root the
# server runs as the postgres user, which cannot enter a private home such as
# /root. Then the cluster lives under /var/lib instead, in a directory named
# after the data directory so that every later call finds it again.
resolve_pgdata() {
	[ -z "${VC_PG_DATA:-}" ] && [ "$(id -u)" -eq 0 ] && id postgres >/dev/null 2>&1 || return 0
	[ -d "$data_dir" ] || return 0
	if ! runuser -u postgres -- test -x "$data_dir" 2>/dev/null; then
		pgdata=/var/lib/velocicompanion-dev/$(printf '%s' "$data_dir" | sha256sum | cut -c1-12)/postgres
		mkdir -p "$(dirname "$pgdata")"
		log "user postgres cannot enter $data_dir; the private cluster lives in $pgdata"
	fi
}

# run_pg runs a server binary as the cluster's owner: the postgres user when we
# are root (PostgreSQL refuses to run as root), ourselves otherwise.
run_pg() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

init_private() {
	local bin=$1
	if [ "$(id -u)" -eq 0 ]; then
		mkdir -p "$pgdata"
		chown postgres:postgres "$pgdata"
		if ! runuser -u postgres -- test -w "$pgdata"; then
			die "user postgres cannot reach $pgdata; set VC_PG_DATA to a directory it can reach"
		fi
	else
		mkdir -p "$pgdata"
	fi
	chmod 700 "$pgdata"
	log "initialising a private PostgreSQL cluster in $pgdata"
	run_pg "$bin/initdb" -D "$pgdata" -U postgres -E UTF8 --no-locale \
		--auth-local=trust --auth-host=trust >"${pgdata%/*}/postgres-initdb.log" 2>&1 ||
		{ cat "${pgdata%/*}/postgres-initdb.log" >&2; die "initdb failed"; }
	# Only the Unix socket and loopback may connect, and they are trusted.
	run_pg tee "$pgdata/pg_hba.conf" >/dev/null <<'EOF'
# Written by deploy/dev/ensure-postgres.sh: a development cluster that only
# local processes can reach, all of them trusted.
# TYPE  DATABASE        USER            ADDRESS                 METHOD
local   all             all                                     trust
host    all             all             127.0.0.1/32            trust
local   replication     all                                     trust
host    replication     all             127.0.0.1/32            trust
EOF
	# The socket lives in the data directory when the path is short enough for
	# sun_path (107 bytes); otherwise TCP only.
	local sockdir="'$pgdata'"
	[ "${#pgdata}" -lt 90 ] || sockdir="''"
	run_pg tee -a "$pgdata/postgresql.conf" >/dev/null <<EOF

# --- deploy/dev/ensure-postgres.sh ---
listen_addresses = '$host'
unix_socket_directories = $sockdir
max_connections = 200
synchronous_commit = on
fsync = on
log_min_messages = warning
EOF
}

start_private() {
	local bin
	bin=$(bindir)
	[ -n "$bin" ] || { install_packages; bin=$(bindir); }
	mkdir -p "$data_dir"
	if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
		useradd --system --user-group --no-create-home --shell /usr/sbin/nologin postgres
	fi
	resolve_pgdata
	[ -f "$pgdata/PG_VERSION" ] || init_private "$bin"
	if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$pgdata"; fi
	local logfile=${pgdata%/*}/postgres.log
	if [ "$(id -u)" -eq 0 ]; then
		touch "$logfile"
		chown postgres:postgres "$logfile"
	fi
	log "starting the private PostgreSQL cluster in $pgdata on $host:$port (log: $logfile)"
	run_pg "$bin/pg_ctl" -D "$pgdata" -l "$logfile" -w -t "$wait_secs" \
		-o "-c port=$port -c listen_addresses=$host" start >&2 ||
		{ tail -n 20 "$logfile" >&2 || true; die "the private cluster did not start"; }
}

case $action in
start) ;;
stop | status)
	bin=$(bindir)
	resolve_pgdata
	[ -n "$bin" ] && [ -f "$pgdata/PG_VERSION" ] || { log "no private cluster in $pgdata"; exit 0; }
	if [ "$action" = stop ]; then
		run_pg "$bin/pg_ctl" -D "$pgdata" -m fast -w stop || true
	else
		run_pg "$bin/pg_ctl" -D "$pgdata" status
	fi
	exit ;;
*) die "unknown action '$action' (want start, stop or status)" ;;
esac

for v in VC_DATABASE_URL DATABASE_URL VC_TEST_DATABASE_URL; do
	if [ -n "${!v:-}" ]; then
		log "$v is set; using that database"
		exit 0
	fi
done

if ready; then
	exit 0
fi

while read -r ver name; do
	[ -n "$ver" ] || continue
	start_debian_cluster "$ver" "$name"
	if wait_ready; then
		log "PostgreSQL is ready on $host:$port"
		exit 0
	fi
	log "cluster $ver/$name did not come up on $host:$port; trying a private cluster"
done < <(debian_clusters)

start_private
wait_ready || die "PostgreSQL is not accepting connections on $host:$port after ${wait_secs}s"
log "PostgreSQL is ready on $host:$port (user postgres, no password)"
