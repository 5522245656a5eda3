#!/usr/bin/env bash
# Install bubblewrap (`bwrap`, Debian package bubblewrap), the payload sandbox pilots use by
# default (CTAPROD_PILOT_SANDBOX=auto): without it payloads run unisolated and the tests of
# payload isolation fail. Idempotent; needs root (or sudo) for apt-get. Used by .ci/run.
set -euo pipefail

if command -v bwrap >/dev/null 2>&1; then
  echo "bwrap: $(command -v bwrap) ($(bwrap --version 2>&1 | head -1))"
else
  echo "installing bubblewrap (apt)"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  if ! $sudo apt-get install -y --no-install-recommends bubblewrap; then
    $sudo apt-get update -q
    $sudo apt-get install -y --no-install-recommends bubblewrap
  fi
fi
# It must also work here (user namespaces, or root): a sandboxed `true`.
if ! bwrap --ro-bind /usr /usr --symlink usr/bin /bin --symlink usr/lib /lib \
     --symlink usr/lib64 /lib64 --proc /proc --dev /dev --unshare-pid --die-with-parent true; then
  echo "bwrap is installed but cannot create a sandbox here" >&2
  exit 1
fi
echo "bwrap: works"
