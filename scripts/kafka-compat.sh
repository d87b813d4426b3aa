#!/usr/bin/env bash
# kafka-compat.sh [VERSION...]: runs the Kafka protocol test (every kind of
# request vidx makes, pipeline/compat_test.go) and the kcat interop test
# against each Apache Kafka version on a fresh single-node broker, and
# prints one line per version: ok, or the step that failed.
set -uo pipefail
cd "$(dirname "$0")/.."
versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(3.9.1 4.0.0 4.0.1 4.1.1 4.2.0)
declare -A result
for v in "${versions[@]}"; do
  log="$(mktemp)"
  if KAFKA_VERSION="$v" bash scripts/with-kafka.sh real go test -count=1 -run 'TestKafkaCalls|TestKcatInterop' ./pipeline/kafka/ ./app/ >"$log" 2>&1; then
    result[$v]="ok"
  else
    result[$v]="FAIL: $(grep -m1 -E 'kafka_test|compat_test.go|kcat_test.go|unsupported|kafka:' "$log" | sed 's/^[[:space:]]*//' | cut -c1-300)"
    echo "--- $v" >&2; tail -n 30 "$log" >&2
  fi
  rm -f "$log"
  printf '%-8s %s\n' "$v" "${result[$v]}"
done
