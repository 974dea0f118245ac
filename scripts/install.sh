#!/usr/bin/env bash
# Install firecrest-fs on Debian 12: the system packages it needs (FUSE 3 and what
# pyfuse3 builds with), then a virtualenv in .venv holding the project.
# With --test, also the programs and Python packages the test suite drives.
set -euo pipefail
cd "$(dirname "$0")/.."

with_tests=false
if [[ "${1:-}" == "--test" ]]; then
    with_tests=true
fi

sudo=""
if [[ "$(id -u)" -ne 0 ]]; then
    sudo="sudo"
fi

packages=(fuse3 libfuse3-dev pkg-config gcc python3 python3-dev python3-venv)
if $with_tests; then
    packages+=(rsync vim-nox git tar libglib2.0-bin coreutils file)
fi
$sudo apt-get update
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y "${packages[@]}"

# Debian's own Python, whose headers python3-dev installed, so that pyfuse3 builds.
if [[ ! -x .venv/bin/python ]]; then
    /usr/bin/python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
if $with_tests; then
    .venv/bin/python -m pip install --quiet -e ".[test]"
else
    .venv/bin/python -m pip install --quiet -e .
fi
echo "firecrest-fs is installed in $(pwd)/.venv"
