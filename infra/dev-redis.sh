#!/bin/sh
# Start, stop or check the two development Redis instances from the local redis-server:
#   stream (infra/redis/stream.conf: noeviction, AOF everysec)  on --stream-port (6380)
#   cache  (infra/redis/cache.conf: 256mb allkeys-lru, Ex events) on --cache-port  (6381)
# both loading a users.acl rendered with fresh passwords (default user off).
#
#   infra/dev-redis.sh start [--dir .run/redis] [--stream-port 6380] [--cache-port 6381]
#   infra/dev-redis.sh status [--dir .run/redis]     # exit 0 when both run
#   infra/dev-redis.sh stop [--dir .run/redis]       # by pid, after checking the pid
#
# Credentials: <dir>/env/<user>.env (mode 0600), e.g.
#   set -a; . .run/redis/env/cachebus-svc-bot.env; set +a
#   cachebus consume --service bot --namespaces positions,prices
# The logic lives in cachebus/devredis.py (tested); this wrapper only finds the command.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
if [ -x "$root/.venv/bin/cachebus" ]; then
    exec "$root/.venv/bin/cachebus" dev-redis "$@"
fi
if command -v cachebus >/dev/null 2>&1; then
    exec cachebus dev-redis "$@"
fi
echo "dev-redis.sh: cachebus is not installed; run 'make test' (creates .venv) or pip install -e ." >&2
exit 2
