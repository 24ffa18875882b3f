#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, only when they are missing.
# Kept here (not in a README step) so a fresh machine needs nothing by hand:
#   postgresql               the PostgreSQL store tests (initdb + pg_ctl in a temporary directory)
#   chromium, chromium-driver the hosted payment page tests (Selenium drives a headless browser)
set -euo pipefail
need=()
have_pg() { command -v pg_ctl >/dev/null || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; }
have_pg || need+=(postgresql)
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
