#!/usr/bin/env bash
# A real, single-node Apache Kafka broker (KRaft mode) on 127.0.0.1:9092, for tests and for
# trying Weir's Kafka connector. The broker's jars come from Maven Central (fetched once with
# Maven into $WEIR_KAFKA_HOME, default ~/.cache/weir-kafka); Java 17 runs it.
#
#   scripts/kafka.sh start    fetch if needed, format a fresh log dir, start, wait until ready
#   scripts/kafka.sh stop     stop the broker started by `start`
#   scripts/kafka.sh fetch    only fetch the jars
set -euo pipefail

KAFKA_VERSION="${KAFKA_VERSION:-4.4.0}"
HOME_DIR="${WEIR_KAFKA_HOME:-$HOME/.cache/weir-kafka}"
LIBS="$HOME_DIR/libs-$KAFKA_VERSION"
RUN_DIR="${WEIR_KAFKA_RUN:-/tmp/weir-kafka}"
PORT="${WEIR_KAFKA_PORT:-9092}"
CONTROLLER_PORT="${WEIR_KAFKA_CONTROLLER_PORT:-9093}"

fetch() {
  [ -f "$LIBS/.complete" ] && return 0
  command -v mvn >/dev/null || { echo "kafka.sh: Maven (mvn) is needed to fetch the broker" >&2; exit 1; }
  mkdir -p "$HOME_DIR"
  cat > "$HOME_DIR/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>weir</groupId><artifactId>kafka-broker</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version></dependency>
  </dependencies>
</project>
POM
  echo "kafka.sh: fetching Apache Kafka $KAFKA_VERSION from Maven Central into $LIBS"
  mvn -q -B -f "$HOME_DIR/pom.xml" dependency:copy-dependencies -DoutputDirectory="$LIBS" -DincludeScope=runtime
  touch "$LIBS/.complete"
}

wait_for_port() {
  for _ in $(seq 1 120); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.5
  done
  return 1
}

start() {
  fetch
  stop >/dev/null 2>&1 || true
  rm -rf "$RUN_DIR" && mkdir -p "$RUN_DIR/logs"
  cat > "$RUN_DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$RUN_DIR/data
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
PROPS
  local java_opts=(-Xms256m -Xmx512m)
  java "${java_opts[@]}" -cp "$LIBS/*" kafka.tools.StorageTool format \
    -t "$(java -cp "$LIBS/*" kafka.tools.StorageTool random-uuid 2>/dev/null)" -c "$RUN_DIR/server.properties" >"$RUN_DIR/logs/format.log" 2>&1
  nohup java "${java_opts[@]}" -cp "$LIBS/*" kafka.Kafka "$RUN_DIR/server.properties" >"$RUN_DIR/logs/stdout.log" 2>&1 &
  echo $! > "$RUN_DIR/pid"
  if ! wait_for_port "$PORT"; then
    echo "kafka.sh: broker did not open 127.0.0.1:$PORT; see $RUN_DIR/logs" >&2
    tail -20 "$RUN_DIR/logs/stdout.log" >&2 || true
    exit 1
  fi
  echo "kafka.sh: broker ready on 127.0.0.1:$PORT (pid $(cat "$RUN_DIR/pid"))"
}

stop() {
  if [ -f "$RUN_DIR/pid" ]; then
    kill "$(cat "$RUN_DIR/pid")" 2>/dev/null || true
    rm -f "$RUN_DIR/pid"
  fi
}

case "${1:-start}" in
  fetch) fetch ;;
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop|fetch" >&2; exit 2 ;;
esac
