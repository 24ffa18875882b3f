#!/usr/bin/env bash
# Runs the pytest suite again under shifted clocks, so that no test can depend on the day
# it runs:
#   - the last day of a month, 23:59:30 in Africa/Algiers (22:59:30 UTC): the run crosses
#     the issuer's midnight, a month end and a year end while it goes;
#   - 29 February of a leap year, shortly before the issuer's midnight as well.
# The clock is moved by one offset (seconds, computed once) in every Python process of the
# run, pytest and the switch processes the tests start alike: tests/shifted_clock/
# sitecustomize.py (time-machine) reads it from SWITCH_TEST_CLOCK_OFFSET. An offset, not a
# start instant, so processes started later agree with the test on the time.
set -euo pipefail
cd "$(dirname "$0")/.."
dates=("${@}")
[ ${#dates[@]} -gt 0 ] || dates=("2027-12-31 22:59:30" "2028-02-29 22:59:30")
for when in "${dates[@]}"; do
  offset=$(( $(date -u -d "$when" +%s) - $(date -u +%s) ))
  echo "== pytest with the clock set to $when UTC (offset ${offset} s)"
  SWITCH_TEST_CLOCK_OFFSET="$offset" PYTHONPATH="$PWD/tests/shifted_clock${PYTHONPATH:+:$PYTHONPATH}" \
    .venv/bin/pytest -q -p no:cacheprovider
done
