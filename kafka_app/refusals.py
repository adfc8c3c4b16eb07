"""A secured cluster's refusals, each in one line: what was refused, to whom, and the way out.
librdkafka retries a refused login or an untrusted certificate for ever, silently to poll();
the scripts stop instead (README.md, "Secure it", lists each case and its exit status)."""

from confluent_kafka import KafkaError

GRANT = "an admin grants it: kafka-acls.sh --add --allow-principal User:{who} --operation"
WORDS = {
    KafkaError._AUTHENTICATION: "The cluster refused the login of {who} ({detail}): check"
    " KAFKA_SASL_USERNAME, the password (KAFKA_SASL_PASSWORD_FILE) and KAFKA_SASL_MECHANISM",
    KafkaError._SSL: "The brokers' certificate cannot be trusted ({detail}): KAFKA_SSL_CA_LOCATION"
    " must be the CA that signed it, and the bootstrap servers names it holds (not an address"
    " it lacks); against a plaintext listener, unset KAFKA_SECURITY_PROTOCOL",
    KafkaError.TOPIC_AUTHORIZATION_FAILED: "{who} may not {operation} topic {topic}: {grant}"
    " {operation} --topic {topic}",
    KafkaError.GROUP_AUTHORIZATION_FAILED: "{who} may not read in group {group}: {grant} Read"
    " --group {group}",
    KafkaError.CLUSTER_AUTHORIZATION_FAILED: "{who} may not start an idempotent producer: it"
    " needs Write on a topic (KIP-679): {grant} Write --topic <its topic>",
}
# Of the login and TLS errors, only these never heal: a broker restarting can also break a
# handshake, or the connection during a login ("SaslAuthenticateRequest failed: ... transport").
PERMANENT = {
    KafkaError._AUTHENTICATION: ("invalid credentials", "Unsupported SASL mechanism"),
    KafkaError._SSL: ("certificate verify failed", "wrong version number"),
}


def refusal(error: KafkaError, who: str | None, **where: str) -> str | None:
    """The line for ``error`` if it is a refusal that will not heal by itself, else None.
    ``where``: ``operation`` and ``topic``, or ``group``, for an authorization error."""
    words = WORDS.get(error.code())
    if words is None:
        return None
    detail = error.str()
    if error.code() in PERMANENT and not any(s in detail for s in PERMANENT[error.code()]):
        return None
    who = who or "this client (no KAFKA_SASL_USERNAME)"
    fields = {"operation": "Write", "topic": "?", "group": "?", **where}
    return words.format(who=who, detail=detail, grant=GRANT.format(who=who), **fields)
