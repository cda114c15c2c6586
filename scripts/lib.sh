#!/usr/bin/env bash
# Shared helpers for scripts/*: sourced, not run on its own.
#
#   ensure_venv            .venv exists, is activated, and has `pip install -e '.[dev]'`
#                          applied for the current setup.cfg
#   ensure_services        PostgreSQL (DATABASE_URL) and Redis (REDIS_URL) answer; local
#                          ones are started (or installed, as root on Debian) when down
#   ensure_database URL    the database named in URL exists on its server
#   ensure_chromium        Debian's chromium and chromium-driver are there for the dashboard's
#                          browser test (installed as root on Debian), or a loud warning says
#                          that test will be skipped

# Strict mode for the scripts that source this; not forced on an interactive shell,
# where an error would close the terminal.
[[ $- == *i* ]] || set -euo pipefail

CALLBOARD_ROOT="$(cd -P "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CALLBOARD_DEFAULT_DATABASE_URL="postgresql://postgres@127.0.0.1:5432/callboard"
CALLBOARD_DEFAULT_REDIS_URL="redis://127.0.0.1:6379/0"
# How long a server we started may take to accept connections.
CALLBOARD_SERVICE_DEADLINE="${CALLBOARD_SERVICE_DEADLINE:-30}"

_say() { printf 'callboard: %s\n' "$*"; }
_die() {
    printf 'callboard: error: %s\n' "$*" >&2
    exit 1
}

# The venv's python once activated; before that the interpreter the user asked for.
_py() {
    if [[ -n "${VIRTUAL_ENV:-}" ]]; then
        python "$@"
    else
        "${PYTHON:-python3}" "$@"
    fi
}

# ---------------------------------------------------------------------------- venv

ensure_venv() {
    local venv="$CALLBOARD_ROOT/.venv"
    local stamp="$venv/.callboard-installed"
    local base="${PYTHON:-python3}"
    local lock_fd want have=""

    # Two scripts started together must not run pip into the same venv at once;
    # locking this (tracked) file avoids leaving a lock file in the tree.
    if command -v flock >/dev/null 2>&1; then
        exec {lock_fd}<"$CALLBOARD_ROOT/scripts/lib.sh"
        flock -w 900 "$lock_fd" || _die "timed out waiting for another script to finish installing"
    fi

    # A venv whose interpreter vanished (e.g. pyenv version removed) is useless: rebuild it.
    if [[ -x "$venv/bin/python" ]] && ! "$venv/bin/python" -c '' >/dev/null 2>&1; then
        _say "virtualenv at .venv is broken, recreating it"
        rm -rf "$venv"
    fi
    if [[ ! -x "$venv/bin/python" ]]; then
        command -v "$base" >/dev/null 2>&1 || _die "'$base' not found: install Python 3.11+ (or set PYTHON)"
        "$base" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
            _die "'$base' is $("$base" -V 2>&1); Callboard needs Python 3.11+ (set PYTHON to one)"
        _say "creating virtualenv at .venv with $("$base" -V 2>&1)"
        "$base" -m venv "$venv" || _die "'$base -m venv' failed (on Debian: apt-get install python3-venv)"
    fi

    # shellcheck disable=SC1091
    source "$venv/bin/activate"

    # Reinstall only when setup.cfg changed (or the package went missing), since pip is slow.
    want="$(python -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' \
        "$CALLBOARD_ROOT/setup.cfg")"
    [[ -f "$stamp" ]] && have="$(<"$stamp")"
    if [[ "$want" != "$have" ]] ||
        ! python -c 'import importlib.metadata as m; m.distribution("callboard")' >/dev/null 2>&1; then
        _say "installing callboard and its dependencies into .venv (setup.cfg changed)"
        rm -f "$stamp"
        # -qq: pip prints errors only.
        (cd "$CALLBOARD_ROOT" && PIP_NO_INPUT=1 python -m pip install -qq -e '.[dev]') ||
            _die "pip install -e '.[dev]' failed"
        printf '%s\n' "$want" >"$stamp"
    fi
    _say "virtualenv .venv is ready ($(python -V 2>&1))"

    if [[ -n "${lock_fd:-}" ]]; then
        exec {lock_fd}<&-
    fi
}

# ------------------------------------------------------------------------ services

# Print "host|port" of a URL ("" host when it has none, e.g. a unix socket URL).
_url_host_port() {
    _py - "$1" "$2" <<'EOF'
import sys
import urllib.parse

try:
    url = urllib.parse.urlsplit(sys.argv[1])
    print(f"{url.hostname or ''}|{url.port or sys.argv[2]}")
except ValueError as exc:  # e.g. a non-numeric port
    sys.exit(f"callboard: error: {exc}")
EOF
}

# Only servers on this machine may be started (or installed) by us.
_is_local_host() {
    case "$1" in
        "" | localhost | 127.* | ::1) return 0 ;;
        *) return 1 ;;
    esac
}

_tcp_open() {
    _py -c 'import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()' \
        "$1" "$2" >/dev/null 2>&1
}

_pg_up() { # host port
    if command -v pg_isready >/dev/null 2>&1; then
        # Exit 0 only once it accepts connections (1 = still starting up).
        if [[ -n "$1" ]]; then
            pg_isready -q -t 3 -h "$1" -p "$2"
        else
            pg_isready -q -t 3 -p "$2"
        fi
    else
        _tcp_open "${1:-127.0.0.1}" "$2"
    fi
}

_redis_up() { # host port
    local out
    if command -v redis-cli >/dev/null 2>&1; then
        out="$(timeout 5 redis-cli -h "$1" -p "$2" ping 2>&1)" || true
        # A password-protected server answers NOAUTH: it is up, the app handles auth.
        [[ "$out" == *PONG* || "$out" == *NOAUTH* || "$out" == *WRONGPASS* ]]
    else
        _tcp_open "$1" "$2"
    fi
}

_wait_until() { # description command...
    local what="$1"
    shift
    local deadline=$((SECONDS + CALLBOARD_SERVICE_DEADLINE))
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
    _say "$what"
}

_can_install_servers() {
    [[ -f /etc/debian_version && "$(id -u)" == 0 ]]
}

_CALLBOARD_INSTALLED_SERVERS=""
_install_servers() {
    # One apt run covers both servers; only done once per script.
    [[ -n "$_CALLBOARD_INSTALLED_SERVERS" ]] && return 0
    _say "installing PostgreSQL and Redis from Debian packages"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -q && apt-get install -y -q postgresql redis-server; } >/dev/null ||
        _die "apt-get install -y postgresql redis-server failed"
    _CALLBOARD_INSTALLED_SERVERS=1
}

_pg_server_installed() {
    compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null && command -v pg_ctlcluster >/dev/null 2>&1
}

# Let the postgres role in over TCP from this machine without a password. Only used on
# a cluster this script installed or created, never on one somebody configured.
_pg_trust_local_tcp() { # version
    local hba="/etc/postgresql/$1/main/pg_hba.conf"
    [[ -f "$hba" ]] || return 0
    if ! grep -Eq '^host[[:space:]]+all[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$hba"; then
        _say "allowing passwordless TCP logins from 127.0.0.1 and ::1 in $hba (new cluster)"
        # pg_hba.conf is first-match-wins, so the trust lines go first.
        {
            printf '# added by callboard scripts/lib.sh: local TCP logins without a password\n'
            printf 'host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n'
            cat "$hba"
        } >"$hba.callboard" && cat "$hba.callboard" >"$hba" && rm -f "$hba.callboard"
    fi
    pg_ctlcluster --skip-systemctl-redirect "$1" main reload >/dev/null 2>&1 || true
}

_start_postgres() { # host port
    local ver fresh=""
    if ! _pg_server_installed; then
        _can_install_servers ||
            _die "PostgreSQL server is not installed: install it (Debian/Ubuntu: apt-get install postgresql) or point DATABASE_URL at a running server"
        _install_servers
        fresh=1
    fi
    # The package normally creates the `main` cluster; make one if it did not.
    if ! compgen -G '/etc/postgresql/*/main' >/dev/null; then
        ver="$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n1)"
        _say "creating PostgreSQL $ver cluster 'main'"
        pg_createcluster "$ver" main >/dev/null || _die "pg_createcluster $ver main failed"
        fresh=1
    fi
    # This is how this machine starts its cluster (`$(ls /etc/postgresql)`; newest if several).
    ver="$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n1)"
    _say "starting PostgreSQL $ver cluster 'main'"
    # "already running" is not fatal: the wait below decides.
    pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
    [[ -n "$fresh" ]] && _pg_trust_local_tcp "$ver"
    _wait_until "PostgreSQL at ${1:-local socket}:$2 is up (started it)" _pg_up "$1" "$2" ||
        _die "PostgreSQL did not accept connections at ${1:-local socket}:$2 within ${CALLBOARD_SERVICE_DEADLINE}s; see /var/log/postgresql/postgresql-$ver-main.log (is the cluster's port $2?)"
}

_start_redis() { # host port
    local log=/var/log/redis/ci.log
    if ! command -v redis-server >/dev/null 2>&1; then
        _can_install_servers ||
            _die "Redis server is not installed: install it (Debian/Ubuntu: apt-get install redis-server) or point REDIS_URL at a running server"
        _install_servers
    fi
    # A second instance on another port gets its own log file.
    [[ "$2" == 6379 ]] || log="/var/log/redis/ci-$2.log"
    mkdir -p /var/lib/redis /var/log/redis
    _say "starting Redis on port $2"
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$2" --save "" --appendonly no \
        --dir /var/lib/redis --logfile "$log" ||
        _die "redis-server failed to start; see $log"
    _wait_until "Redis at $1:$2 is up (started it)" _redis_up "$1" "$2" ||
        _die "Redis did not answer at $1:$2 within ${CALLBOARD_SERVICE_DEADLINE}s; see $log"
}

# Fail early and clearly if we cannot log in (e.g. Debian's default scram auth on TCP).
_pg_check_login() { # url host port
    _py -c 'import psycopg2' >/dev/null 2>&1 || return 0 # no venv yet: nothing to check with
    local err
    if ! err="$(_py - "$1" 2>&1 <<'EOF'
import sys

import psycopg2

try:
    psycopg2.connect(sys.argv[1], dbname="postgres", connect_timeout=5).close()
except psycopg2.OperationalError as exc:
    sys.exit(str(exc).strip())
EOF
    )"; then
        _die "cannot log in to PostgreSQL at ${2:-local socket}:$3 with DATABASE_URL ($err).
  Put the password in DATABASE_URL, or let the role in from this machine: add
  'host all all 127.0.0.1/32 trust' at the top of pg_hba.conf and reload PostgreSQL."
    fi
}

ensure_services() {
    local db_url="${DATABASE_URL:-$CALLBOARD_DEFAULT_DATABASE_URL}"
    local redis_url="${REDIS_URL:-$CALLBOARD_DEFAULT_REDIS_URL}"
    local host port hp

    hp="$(_url_host_port "$db_url" 5432)" || _die "cannot parse DATABASE_URL"
    IFS='|' read -r host port <<<"$hp"
    if _pg_up "$host" "$port"; then
        _say "PostgreSQL at ${host:-local socket}:$port is up"
    elif _is_local_host "$host"; then
        _start_postgres "$host" "$port"
    else
        _die "PostgreSQL at $host:$port is unreachable (not on this machine, so not starting it)"
    fi
    _pg_check_login "$db_url" "$host" "$port"

    case "$redis_url" in
        redis://* | rediss://*) ;;
        *) _die "REDIS_URL must be redis:// or rediss:// (got ${redis_url%%://*}://...)" ;;
    esac
    hp="$(_url_host_port "$redis_url" 6379)" || _die "cannot parse REDIS_URL"
    IFS='|' read -r host port <<<"$hp"
    host="${host:-127.0.0.1}"
    if _redis_up "$host" "$port"; then
        _say "Redis at $host:$port is up"
    elif _is_local_host "$host" && [[ "$redis_url" == redis://* ]]; then
        _start_redis "$host" "$port"
    else
        _die "Redis at $host:$port is unreachable (only a local redis:// server is started here)"
    fi
}

# ------------------------------------------------------------------------ database

ensure_database() { # url
    local url="${1:?ensure_database needs a database URL}"
    python - "$url" <<'EOF' || _die "could not make sure the database in DATABASE_URL exists"
import sys
import urllib.parse

import psycopg2
from psycopg2 import errors, sql

url = sys.argv[1]
parts = urllib.parse.urlsplit(url)
name = urllib.parse.unquote(parts.path.lstrip("/"))
if not name:
    sys.exit("callboard: error: no database name in DATABASE_URL")
where = f"{parts.hostname or 'local socket'}:{parts.port or 5432}"

# CREATE DATABASE cannot run in a transaction, and we need some existing database
# on the same server to issue it from.
try:
    conn = psycopg2.connect(url, dbname="postgres", connect_timeout=10)
    conn.autocommit = True
    with conn.cursor() as cur:  # not `with conn`: that opens a transaction
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if cur.fetchone():
            print(f"callboard: database {name} exists on {where}")
        else:
            try:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                print(f"callboard: created database {name} on {where}")
            except errors.DuplicateDatabase:  # another script won the race
                print(f"callboard: database {name} exists on {where}")
    conn.close()
except psycopg2.Error as exc:
    sys.exit(f"callboard: error: database {name} on {where}: {str(exc).strip()}")
EOF
}

# ------------------------------------------------------------------------ chromium

ensure_chromium() {
    local log
    [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]] && return 0
    if _can_install_servers; then
        _say "installing chromium and chromium-driver from Debian packages (dashboard browser test)"
        log="$(mktemp)"
        if DEBIAN_FRONTEND=noninteractive apt-get update -q >"$log" 2>&1 &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >>"$log" 2>&1; then
            rm -f "$log"
            return 0
        fi
        tail -n 5 "$log" >&2
        rm -f "$log"
        printf 'callboard: WARNING: apt-get install chromium chromium-driver FAILED: the dashboard browser test will be SKIPPED\n' >&2
        return 0
    fi
    printf 'callboard: WARNING: chromium or chromedriver is missing and cannot be installed here (needs root on Debian): the dashboard browser test will be SKIPPED; install chromium and chromium-driver\n' >&2
}
