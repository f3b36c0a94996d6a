#!/usr/bin/env bash
# Usage: check_canary.sh CANARY_BINARY SUPPRESSIONS
# Fails unless TSan, with loom's suppressions, reports each deliberate race of
# tests/tsan/canary_test.cpp (exit 66, a report naming the canary) and accepts each
# ordered twin (exit 0, no report). Run by `make test-tsan` after the unit tests.
set -u
bin=$1
supp=$2
fail=0
for name in RacyGloo RacyShm OrderedGloo OrderedShm; do
  out=$(TSAN_OPTIONS="suppressions=$supp" timeout 300 "$bin" --gtest_filter="TsanCanary.$name" 2>&1)
  rc=$?
  reports=$(grep -c 'WARNING: ThreadSanitizer' <<<"$out")
  case $name in
    Racy*) if [[ $rc -eq 66 ]] && grep -q 'canary_test.cpp' <<<"$out"; then ok=1; else ok=0; fi ;;
    *) if [[ $rc -eq 0 && $reports -eq 0 ]]; then ok=1; else ok=0; fi ;;
  esac
  if [[ $ok -eq 1 ]]; then
    echo "tsan canary: $name: as expected (exit $rc, $reports report(s))"
  else
    echo "tsan canary: $name: UNEXPECTED (exit $rc, $reports report(s)); output follows"
    echo "$out" | tail -60
    fail=1
  fi
done
exit $fail
