#!/usr/bin/env bash
# Runs Apache Kafka on loopback for local use, tests and the crash harness:
# a single KRaft node (controller + broker) or, with --nodes 3, a
# three-node cluster with replication factor 3 and min.insync.replicas=2.
#
#   scripts/kafka.sh start [--nodes N] [--fresh]   prints the bootstrap address on stdout
#   scripts/kafka.sh stop                          stops every node; data is kept
#   scripts/kafka.sh restart                       stop, then start on the same ports and data
#   scripts/kafka.sh status                        prints the bootstrap address; exit 1 unless every node runs
#   scripts/kafka.sh stop-node I | start-node I    one node (1-based) of a cluster
#   scripts/kafka.sh kill-node I                   SIGKILL one node, as a crash
#   scripts/kafka.sh clean                         stop and remove the data
#   scripts/kafka.sh fetch                         only resolve the broker's jars
#   scripts/kafka.sh logs                          names the log files
#
# The broker's jars come from Maven Central through scripts/kafka/pom.xml
# (`mvn dependency:copy-dependencies`), cached in ~/.cache/vidx/kafka-VERSION.
# Settings: KAFKA_VERSION (default 4.1.1), VIDX_KAFKA_DIR (where data, logs
# and pids live; default ~/.cache/vidx/kafka-run), KAFKA_HEAP_OPTS.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VERSION="${KAFKA_VERSION:-4.1.1}"
CACHE_DIR="${VIDX_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vidx}"
LIB="$CACHE_DIR/kafka-$VERSION"
RUN="${VIDX_KAFKA_DIR:-$CACHE_DIR/kafka-run}"
HEAP="${KAFKA_HEAP_OPTS:--Xms128m -Xmx768m}"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-120}"

log() { printf 'kafka: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

fetch() {
  [ -f "$LIB/.complete" ] && return 0
  command -v mvn >/dev/null || die "mvn is required to fetch Apache Kafka from Maven Central"
  command -v java >/dev/null || die "java (17 or newer) is required to run Apache Kafka"
  log "fetching Apache Kafka $VERSION from Maven Central into $LIB"
  rm -rf "$LIB"
  mkdir -p "$LIB"
  mvn -q -B -Dstyle.color=never -f "$ROOT/scripts/kafka/pom.xml" dependency:copy-dependencies \
    -Dkafka.version="$VERSION" -DincludeScope=runtime -DoutputDirectory="$LIB" >&2 ||
    die "could not resolve org.apache.kafka:kafka_2.13:$VERSION"
  ls "$LIB"/kafka_2.13-*.jar >/dev/null 2>&1 || die "kafka_2.13-$VERSION.jar missing in $LIB"
  touch "$LIB/.complete"
}

java_run() { java $HEAP -Djava.awt.headless=true -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.properties" -cp "$LIB/*" "$@"; }

nodes() { cat "$RUN/nodes" 2>/dev/null || echo 0; }
port() { sed -n "${1}p" "$RUN/ports"; }      # client port of node $1
cport() { sed -n "${1}p" "$RUN/cports"; }    # controller port of node $1
pid_of() { cat "$RUN/node$1/pid" 2>/dev/null || true; }
alive() { local p; p="$(pid_of "$1")"; [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

bootstrap() {
  local n i out=""
  n="$(nodes)"
  for ((i = 1; i <= n; i++)); do out="${out:+$out,}127.0.0.1:$(port "$i")"; done
  echo "$out"
}

free_ports() { # $1 ports that nothing listens on now
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
EOF
}

configure() { # $1 node count: ports, configs and formatted storage
  local n="$1" i voters="" rf=1 isr=1
  [ "$n" -ge 3 ] && { rf=3; isr=2; }
  [ "$n" -eq 2 ] && { rf=2; isr=1; }
  mkdir -p "$RUN"
  echo "$n" >"$RUN/nodes"
  free_ports "$n" >"$RUN/ports"
  free_ports "$n" >"$RUN/cports"
  for ((i = 1; i <= n; i++)); do voters="${voters:+$voters,}$i@127.0.0.1:$(cport "$i")"; done
  # A cluster id is a Kafka Uuid: 16 random bytes, URL-safe base64 without
  # padding (what `kafka-storage random-uuid` prints, without a JVM start).
  local cluster
  cluster="$(python3 -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("="))')"
  [ -n "$cluster" ] || die "could not make a cluster id"
  local pids=()
  for ((i = 1; i <= n; i++)); do
    mkdir -p "$RUN/node$i/data"
    cat >"$RUN/node$i/server.properties" <<EOF
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$(port "$i"),CONTROLLER://127.0.0.1:$(cport "$i")
advertised.listeners=PLAINTEXT://127.0.0.1:$(port "$i")
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$RUN/node$i/data
num.partitions=4
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
# vidx creates its topics itself, as on managed clusters that forbid
# auto-creation; a stage must never depend on it.
auto.create.topics.enable=false
# A local cluster has no reason to hold the first group join back.
group.initial.rebalance.delay.ms=0
EOF
    # One JVM per node: format them side by side.
    java_run kafka.tools.StorageTool format -t "$cluster" -c "$RUN/node$i/server.properties" --ignore-formatted \
      >>"$RUN/node$i/kafka.log" 2>&1 &
    pids+=($!)
  done
  for ((i = 1; i <= n; i++)); do
    wait "${pids[$((i - 1))]}" || { tail -n 20 "$RUN/node$i/kafka.log" >&2; die "formatting node $i failed"; }
  done
}

start_node() { # $1 node index
  local i="$1"
  alive "$i" && return 0
  echo "--- start $(date -u +%FT%TZ)" >>"$RUN/node$i/kafka.log"
  # setsid: the broker outlives the shell that started it and is not hit by
  # its job control signals; stop finds it through the pid file.
  setsid java $HEAP -Djava.awt.headless=true -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.properties" \
    -cp "$LIB/*" kafka.Kafka "$RUN/node$i/server.properties" >>"$RUN/node$i/kafka.log" 2>&1 </dev/null &
  echo $! >"$RUN/node$i/pid"
}

started() { # $1 node index: its log says so since its last start, and its port accepts
  local i="$1"
  awk '/^--- start/{s=0} /Kafka Server started|\[KafkaRaftServer.*started/{s=1} END{exit !s}' "$RUN/node$i/kafka.log" &&
    (exec 3<>"/dev/tcp/127.0.0.1/$(port "$i")") 2>/dev/null
}

wait_nodes() { # node indexes to wait for
  local deadline=$((SECONDS + START_TIMEOUT)) i
  for i in "$@"; do
    until started "$i"; do
      if ! alive "$i"; then tail -n 30 "$RUN/node$i/kafka.log" >&2; die "node $i exited during start (log: $RUN/node$i/kafka.log)"; fi
      [ "$SECONDS" -lt "$deadline" ] || { tail -n 30 "$RUN/node$i/kafka.log" >&2; die "node $i not up after ${START_TIMEOUT}s (log: $RUN/node$i/kafka.log)"; }
      sleep 0.3
    done
  done
}

stop_node() { # $1 node index; $2 signal (TERM)
  local i="$1" sig="${2:-TERM}" p deadline
  p="$(pid_of "$i")"
  [ -n "$p" ] || return 0
  if kill -0 "$p" 2>/dev/null; then
    kill -"$sig" "$p" 2>/dev/null || true
    # A node whose quorum is gone can wait long in controlled shutdown.
    deadline=$((SECONDS + 30))
    while kill -0 "$p" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
    if kill -0 "$p" 2>/dev/null; then
      log "node $i did not stop within 30s; killing it"
      kill -KILL "$p" 2>/dev/null || true
      while kill -0 "$p" 2>/dev/null; do sleep 0.1; done
    fi
  fi
  rm -f "$RUN/node$i/pid"
}

cmd_start() {
  local n=1 fresh=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --nodes) n="$2"; shift 2 ;;
      --nodes=*) n="${1#*=}"; shift ;;
      --fresh) fresh=1; shift ;;
      *) die "start: unknown flag $1" ;;
    esac
  done
  [[ "$n" =~ ^[1-9]$ ]] || die "start: --nodes wants 1..9, got $n"
  fetch
  if [ -f "$RUN/nodes" ] && { [ "$fresh" = 1 ] || [ "$(nodes)" != "$n" ] || [ "$(cat "$RUN/version" 2>/dev/null)" != "$VERSION" ]; }; then
    cmd_clean
  fi
  if [ ! -f "$RUN/nodes" ]; then
    log "formatting a $n-node KRaft cluster (Apache Kafka $VERSION) in $RUN"
    configure "$n"
    echo "$VERSION" >"$RUN/version"
  fi
  local i
  for ((i = 1; i <= n; i++)); do start_node "$i"; done
  wait_nodes $(seq 1 "$n")
  log "Apache Kafka $VERSION up: $n node(s), logs in $RUN/node*/kafka.log"
  bootstrap
}

cmd_stop() {
  local n i p
  n="$(nodes)"
  # Every node at once: stopped one by one, the last ones lose their
  # controller quorum and wait in controlled shutdown until killed.
  for ((i = 1; i <= n; i++)); do
    p="$(pid_of "$i")"
    [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true
  done
  for ((i = 1; i <= n; i++)); do stop_node "$i" TERM; done
}

cmd_clean() {
  cmd_stop
  rm -rf "$RUN"
}

cmd_status() {
  local n i up=0
  n="$(nodes)"
  [ "$n" -gt 0 ] || { log "no cluster in $RUN"; exit 1; }
  for ((i = 1; i <= n; i++)); do
    if alive "$i"; then up=$((up + 1)); log "node $i: running (pid $(pid_of "$i"), 127.0.0.1:$(port "$i"))"; else log "node $i: stopped"; fi
  done
  bootstrap
  [ "$up" = "$n" ]
}

node_arg() {
  [[ "${1:-}" =~ ^[0-9]+$ ]] && [ "$1" -ge 1 ] && [ "$1" -le "$(nodes)" ] || die "want a node index 1..$(nodes)"
}

main() {
  local cmd="${1:-}"
  shift || true
  case "$cmd" in
    start) cmd_start "$@" ;;
    stop) cmd_stop ;;
    restart)
      [ -f "$RUN/nodes" ] || die "no cluster in $RUN to restart"
      cmd_stop
      cmd_start --nodes "$(nodes)"
      ;;
    status) cmd_status ;;
    stop-node) node_arg "${1:-}"; stop_node "$1" TERM ;;
    kill-node) node_arg "${1:-}"; stop_node "$1" KILL ;;
    start-node) node_arg "${1:-}"; fetch; start_node "$1"; wait_nodes "$1"; bootstrap ;;
    clean) cmd_clean ;;
    fetch) fetch; echo "$LIB" ;;
    logs) ls "$RUN"/node*/kafka.log ;;
    *) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
  esac
}

main "$@"
