#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, only when they are missing.
# Kept here (not in a README step) so a fresh machine needs nothing by hand.
set -euo pipefail
need=()
# Add packages as parts need them, e.g. PostgreSQL for the store backend tests:
#   command -v pg_ctl >/dev/null || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
