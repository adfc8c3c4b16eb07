"""What both consumer scripts do before their loop: logging, signals, the group member and the
dead-letter writer that the flags describe, the probes, and the check that the topic exists."""

import argparse
import functools
import logging

from confluent_kafka import Consumer

from kafka_app import lifecycle, metrics, probes, settings
from kafka_app.client_health import ClientHealth
from kafka_app.dead_letters import DeadLetters, dead_letter_producer_config
from kafka_app.group_member import GroupMember
from kafka_app.lifecycle import RecordLog, counted
from kafka_app.topic_check import require_topic


def start(args: argparse.Namespace, how: str) -> tuple[GroupMember, DeadLetters]:
    """The member and its dead-letter writer, from one read of the settings; a bad one exits 2."""
    lifecycle.setup_logging(args.log_level, args.log_format)
    health = ClientHealth()
    stop = lifecycle.stop_on_signals(lambda: "What was not committed will be delivered again.")
    dlq_topic = args.dlq_topic or f"{args.topic}.dlq"
    with settings.exit_on_config_error():
        bootstrap, properties = settings.connection(args.bootstrap_servers, args.client_properties)
        health.principal = properties.get("sasl.username")
        mine = {**health.callbacks(), "client.id": args.client_id}
        group, protocol = args.group_id, args.group_protocol
        consumer = Consumer(settings.consumer_config(bootstrap, group, properties, mine, protocol))
        quiet = health.callbacks(statistics=False)  # polled only when it writes one
        writer = {**quiet, "client.id": f"{args.client_id}-dead-letters"}
        config = dead_letter_producer_config(bootstrap, properties, writer)
        dead_letters = DeadLetters(dlq_topic, group, config)
    log = RecordLog(args.processed_log)
    member = GroupMember(consumer, stop, health, args.max_messages, args.idle_exit, log, group)
    measure = functools.partial(metrics.consumer_metrics, member, dead_letters, health)
    probes.start(args, health, member.heartbeat, "consumer", metrics.collectors(health, measure))
    dlq = f"dead letters after {counted(args.max_attempts, 'attempt')} go to {dlq_topic}"
    logging.info(f"Consuming {args.topic} at {bootstrap} as group {group}{how}; {dlq}")
    require_topic(consumer, args.topic)
    require_topic(consumer, dlq_topic, needed_now=False)
    return member, dead_letters
