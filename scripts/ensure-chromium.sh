#!/usr/bin/env bash
# Installs Debian's chromium (for the status page's browser test) if it is missing. Idempotent;
# needs root (CI runs as root). Prints the browser's path.
set -euo pipefail
for b in chromium chromium-browser; do
    if command -v "$b" > /dev/null 2>&1; then
        command -v "$b"
        exit 0
    fi
done
if [ "$(id -u)" != 0 ]; then
    echo "chromium is not installed and this is not root: install the Debian package chromium" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq > /dev/null
apt-get install -y -qq chromium > /dev/null
command -v chromium
