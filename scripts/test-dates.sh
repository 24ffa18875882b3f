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
# The runs are independent (own clock offset, own temporary directory, free ports), so they
# go side by side: most of a run is spent waiting on the servers the tests start, and CI
# has a time budget. Each run's output is printed whole once both have ended.
# Job control on: a background job of a non-interactive shell would otherwise start with
# SIGINT ignored, and the tests that interrupt a command with SIGINT would see it ignored.
set -m
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pids=()
i=0
for when in "${dates[@]}"; do
  offset=$(( $(date -u -d "$when" +%s) - $(date -u +%s) ))
  echo "== pytest with the clock set to $when UTC (offset ${offset} s): started"
  echo "== pytest with the clock set to $when UTC (offset ${offset} s)" > "$work/run$i.log"
  SWITCH_TEST_CLOCK_OFFSET="$offset" PYTHONPATH="$PWD/tests/shifted_clock${PYTHONPATH:+:$PYTHONPATH}" \
    .venv/bin/pytest -q -p no:cacheprovider --basetemp="$work/tmp$i" >> "$work/run$i.log" 2>&1 &
  pids+=($!)
  i=$((i + 1))
done
status=0
for n in "${!pids[@]}"; do
  wait "${pids[$n]}" || status=1
  cat "$work/run$n.log"
done
exit $status
