#!/bin/sh
# As the node image's entrypoint: arguments that are no command (a flag, a
# script name) are handed to node.
set -e
if [ "${1#-}" != "$1" ] || { [ -n "${1:-}" ] && ! command -v "$1" >/dev/null 2>&1; }; then
  set -- node "$@"
fi
exec "$@"
