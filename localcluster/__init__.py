"""A real 3-broker Apache Kafka cluster (KRaft) as local JVM processes, without Docker.

It runs the brokers that docker-compose.yml describes, from Kafka's jars on Maven Central, so tests
and `make demo` use a real cluster on machines that have Java but no Docker engine.
Use it as ``python -m localcluster up | down [--wipe] | status | env | demo | jars``.
"""
