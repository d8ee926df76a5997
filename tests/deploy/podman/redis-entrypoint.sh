#!/bin/sh
# What the official redis image's entrypoint does that docker-compose.yml
# relies on: options alone mean redis-server; root hands /data to user redis
# and drops to it; a redis-server without a config file that sets
# protected-mode gets `--protected-mode no` (other containers must reach it).
set -e
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
    set -- redis-server "$@"
fi
if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
    find . \! -user redis -exec chown redis '{}' +
    exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi
if [ "$1" = redis-server ]; then
    shift
    config=
    if [ -f "${1:-}" ]; then
        config=$1
        shift
    fi
    if [ -n "$config" ] && grep -q '^protected-mode' "$config"; then
        set -- redis-server "$config" "$@"
    else
        set -- redis-server ${config:+"$config"} --protected-mode no "$@"
    fi
fi
exec "$@"
