#!/usr/bin/env bash
# with-kafka.sh KINDS COMMAND...: runs COMMAND with VIDX_TEST_KAFKA=KINDS
# (embedded, real or both). For real and both it first starts a single-node
# Apache Kafka of the run's own (scripts/kafka.sh, in a temporary directory,
# on free loopback ports), exports its address as VIDX_TEST_KAFKA_BROKERS,
# and stops and removes it when COMMAND ends, whatever its outcome.
set -euo pipefail
kinds="${1:?usage: with-kafka.sh embedded|real|both COMMAND...}"
shift
export VIDX_TEST_KAFKA="$kinds"
if [ "$kinds" = embedded ]; then exec "$@"; fi

here="$(cd "$(dirname "$0")" && pwd)"
VIDX_KAFKA_DIR="$(mktemp -d "${TMPDIR:-/tmp}/vidx-kafka.XXXXXX")"
export VIDX_KAFKA_DIR
cleanup() {
  local rc=$?
  if [ "$rc" != 0 ] && [ -n "${CI:-}" ]; then
    for f in "$VIDX_KAFKA_DIR"/node*/kafka.log; do [ -f "$f" ] && { echo "--- tail of $f" >&2; tail -n 40 "$f" >&2; }; done
  fi
  bash "$here/kafka.sh" clean >/dev/null 2>&1 || true
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
VIDX_TEST_KAFKA_BROKERS="$(bash "$here/kafka.sh" start)"
export VIDX_TEST_KAFKA_BROKERS
echo "tests: VIDX_TEST_KAFKA=$kinds, Apache Kafka ${KAFKA_VERSION:-4.1.1} at $VIDX_TEST_KAFKA_BROKERS" >&2
"$@"
