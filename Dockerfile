# App image for producer.py, batch_message_consumer.py and single_message_consumer.py, and
# dead_letters.py, which lists and redrives dead letters when run by hand in such a container.
# docker-compose.yml builds it once and picks the script per service with `command:`.
#
# Debian (glibc) slim base: confluent-kafka publishes manylinux wheels only, no musl/Alpine ones,
# so on Alpine pip would try to build librdkafka from source.
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Unprivileged runtime user; the code stays owned by root, so the app cannot modify it.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin app

# Dependencies in their own layer: it is rebuilt only when requirements.txt changes.
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

# Only the application code (an explicit list; tests/, bench/, localcluster/ stay out).
COPY message_model.py producer.py batch_message_consumer.py single_message_consumer.py \
     dead_letters.py ./
COPY kafka_app/ ./kafka_app/

USER 10001:10001

# Default only; each compose service sets its own command.
CMD ["python", "producer.py"]
