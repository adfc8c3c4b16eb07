#!/usr/bin/env bash
# Runs a class from Kafka's jars, with the variables the official launcher reads.
# shellcheck disable=SC2086  # the *_OPTS variables are lists of JVM options
exec java ${KAFKA_HEAP_OPTS:--Xmx256M} ${KAFKA_JVM_PERFORMANCE_OPTS:-} ${KAFKA_OPTS:-} \
  ${KAFKA_LOG4J_OPTS:--Dlog4j2.configurationFile=/opt/kafka/config/tools-log4j2.yaml} \
  -cp "/opt/kafka/libs/*" "$@"
