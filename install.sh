#!/usr/bin/env bash
# Installs strix into .venv beside this script, with the Debian packages it needs.
#   ./install.sh          ffmpeg and a venv with strix: then .venv/bin/strix --demo
#   ./install.sh --test   also motion and chromium, and the test extras
set -euo pipefail
cd "$(dirname "$0")"
packages=()
command -v ffmpeg >/dev/null || packages+=(ffmpeg)
python3 -c 'import ensurepip' 2>/dev/null || packages+=(python3-venv)
if [ "${1:-}" = "--test" ]; then
    command -v motion >/dev/null || packages+=(motion)
    command -v chromium >/dev/null || packages+=(chromium)
fi
if [ ${#packages[@]} -gt 0 ]; then
    sudo=$([ "$(id -u)" = 0 ] || echo sudo)
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${packages[@]}"
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q ".$([ "${1:-}" = "--test" ] && echo '[test]')"
