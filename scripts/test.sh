#!/usr/bin/env bash
# The test command: installs the real clients the tests drive (Debian's redis-server and
# redis-tools, curl and openssl, redis-py from PyPI, node-redis and ioredis from npm) when
# they are missing, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null \
    || ! command -v curl >/dev/null || ! command -v openssl >/dev/null; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server redis-tools \
        curl openssl >/dev/null
fi
if ! python3 -c 'import redis' 2>/dev/null; then
    python3 -m pip install -q redis
fi
# node-redis and ioredis from npm, pinned by the lock file, for the Node.js client checks.
if [ ! -d crates/hydra/tests/clients/node_modules/ioredis ] \
    || [ ! -d crates/hydra/tests/clients/node_modules/redis ]; then
    if ! command -v npm >/dev/null; then
        SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
    fi
    (cd crates/hydra/tests/clients && npm ci --silent --no-audit --no-fund)
fi
exec cargo test --workspace "$@"
