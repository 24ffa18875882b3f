#!/usr/bin/env bash
# Runs the pytest suite again under shifted clocks (libfaketime, installed by
# scripts/system-deps.sh), so that no test can depend on the day it runs:
#   - the last day of a month, 23:59:30 in Africa/Algiers (22:59:30 UTC): the run crosses
#     the issuer's midnight, a month end and a year end while it goes;
#   - 29 February of a leap year, shortly before the issuer's midnight as well.
# The clock starts at that instant and then runs at normal speed ("@" in FAKETIME). The
# monotonic clock is faked too (libfaketime 0.9.10 makes sleeps fail with EINVAL when it
# is not): only its origin moves, which no test reads.
set -euo pipefail
cd "$(dirname "$0")/.."
lib=$(ls /usr/lib/*/faketime/libfaketime.so.1 2>/dev/null | head -n 1 || true)
if [ -z "$lib" ]; then
  echo "libfaketime is missing: run scripts/system-deps.sh" >&2
  exit 1
fi
dates=("${@}")
[ ${#dates[@]} -gt 0 ] || dates=("2027-12-31 22:59:30" "2028-02-29 22:59:30")
for when in "${dates[@]}"; do
  echo "== pytest with the clock set to $when UTC"
  TZ=UTC FAKETIME="@$when" LD_PRELOAD="$lib" .venv/bin/pytest -q -p no:cacheprovider
done
