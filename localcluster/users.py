"""SCRAM users of the secured cluster, added or given a new password at run time by the admin
(the brokers' first format holds only the principals of localcluster/secrets.py)."""

from __future__ import annotations

import re

from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from localcluster.errors import ClusterError

# Kafka's default for SCRAM-SHA-512 credentials made by its tools.
ITERATIONS = 4096
# A name that is safe as a file name in secrets/ and in the format tool's [name=...] lists.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def check_name(user: str) -> str:
    if not NAME.fullmatch(user):
        raise ClusterError(f"user name {user!r}: use letters, digits, '.', '_' and '-' only")
    return user


def set_password(client: AdminClient, user: str, password: str, timeout: float = 30) -> None:
    """Create ``user`` with this SCRAM-SHA-512 password, or replace its password. Connections
    logged in before keep working (the brokers do not ask again); new ones need the new one."""
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, ITERATIONS)
    upsert = UserScramCredentialUpsertion(user, info, password.encode())
    try:
        for future in client.alter_user_scram_credentials([upsert]).values():
            future.result(timeout=timeout)
    except Exception as exc:
        raise ClusterError(f"cannot set the password of {user}: {exc}") from None
