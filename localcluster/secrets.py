"""The secured profile's secrets, generated once into an ignored folder (``secrets/``).

``python -m localcluster secrets`` writes what docker-compose.secure.yml mounts and the local
cluster reads with ``--secure``:

- ``ca.pem``: a CA made here. Its key is thrown away once the broker certificate is signed, so
  nobody can sign another; new secrets mean a new CA.
- ``broker.pem``: the brokers' certificate (SANs kafka-0..2, localhost and 127.0.0.1, which the
  local cluster's internal listeners use) and its key, unencrypted PKCS#8 (Kafka's PEM
  keystore reads no other kind), readable only by its owner.
- ``<principal>.password``: a random password per SCRAM principal (PRINCIPALS).
- ``scram-format.args``: a java argument file, ``kafka.tools.StorageTool format --add-scram ...``
  with every principal's credentials, which a new node's format reads, so that no password is
  ever on a command line (``ps`` shows ``java ... @scram-format.args``).
- ``broker.env``: the brokers' own SCRAM login on the inter-broker listener, as Compose's
  ``env_file`` (and the local cluster) read it.
- ``admin.properties``: the admin's client settings for Kafka's tools in the containers
  (``--command-config``); the local cluster's admin is Python and reads the password file.
- ``kafka-ui.env``: Kafka UI's SCRAM login, as Compose's ``env_file``.

Certificates and passwords are never overwritten; the files written from the passwords are
written again when one is new (a principal added here). A cluster formatted before knows only
the users it was formatted with: add later ones with the admin (README.md, "Secure it"), or
delete the folder and the cluster's data to start again.
"""

from __future__ import annotations

import os
import secrets
import string
from pathlib import Path

import trustme
from cryptography.hazmat.primitives import serialization

BROKER = "broker"  # the brokers' principal: super user, with the admin only
ADMIN = "admin"
# One principal per app, and one for Kafka UI; docker-compose.secure.yml and secure/acls.conf
# give each its own ACLs.
PRINCIPALS = (
    BROKER, ADMIN, "producer", "batch-consumer", "single-consumer", "redrive", "kafka-ui"
)  # fmt: skip
# Written from the passwords: made again when a password is new.
DERIVED = ("scram-format.args", "broker.env", "admin.properties", "kafka-ui.env")
SCRAM = "SCRAM-SHA-512"
CERT_NAMES = ("kafka-0", "kafka-1", "kafka-2", "localhost", "127.0.0.1")
# Inside the containers, where docker-compose.secure.yml mounts the folder.
MOUNTED_AT = "/etc/kafka/secrets"


def new_password() -> str:
    """32 letters and digits (190 bits): nothing a properties file, a JAAS line or the format
    tool's ``[name=...,password=...]`` would need to escape."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(32))


def _write(path: Path, text: str, private: bool) -> None:
    """Create ``path`` (never replace it), private ones 0600 from the start."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)


def _certificates(folder: Path) -> None:
    authority = trustme.CA(organization_name="kafka-python-demo")
    leaf = authority.issue_cert(*CERT_NAMES, common_name=BROKER)
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    pkcs8 = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    chain = "".join(blob.bytes().decode() for blob in leaf.cert_chain_pems)
    _write(folder / "broker.pem", chain + pkcs8, private=True)
    _write(folder / "ca.pem", authority.cert_pem.bytes().decode(), private=False)


def jaas(user: str, password: str) -> str:
    """A SCRAM login as a JAAS line, as Java clients and the brokers' listeners take it."""
    module = "org.apache.kafka.common.security.scram.ScramLoginModule"
    return f'{module} required username="{user}" password="{password}";'


def _credentials(folder: Path, passwords: dict[str, str]) -> None:
    scram = "".join(f"--add-scram\n{SCRAM}=[name={u},password={p}]\n" for u, p in passwords.items())
    _write(folder / "scram-format.args", f"kafka.tools.StorageTool\nformat\n{scram}", True)
    login = jaas(BROKER, passwords[BROKER])
    variable = "KAFKA_LISTENER_NAME_INTERNAL_SCRAM___SHA___512_SASL_JAAS_CONFIG"
    _write(folder / "broker.env", f"{variable}={login}\n", True)
    admin = {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": SCRAM,
        "sasl.jaas.config": jaas(ADMIN, passwords[ADMIN]),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": f"{MOUNTED_AT}/ca.pem",
    }
    _write(folder / "admin.properties", "".join(f"{k}={v}\n" for k, v in admin.items()), True)
    ui = jaas("kafka-ui", passwords["kafka-ui"])
    _write(folder / "kafka-ui.env", f"KAFKA_CLUSTERS_0_PROPERTIES_SASL_JAAS_CONFIG={ui}\n", True)


def generate(folder: Path) -> list[str]:
    """Write what is missing; return the names written (none if the folder is complete)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    written = []
    if not ((folder / "ca.pem").exists() and (folder / "broker.pem").exists()):
        for name in ("ca.pem", "broker.pem"):  # one without the other: both anew
            (folder / name).unlink(missing_ok=True)
        _certificates(folder)
        written += ["ca.pem", "broker.pem"]
    for principal in PRINCIPALS:
        if not (path := folder / f"{principal}.password").exists():
            _write(path, new_password() + "\n", private=True)
            written.append(path.name)
    if any(n.endswith(".password") for n in written) or not all(
        (folder / name).exists() for name in DERIVED
    ):
        _derive(folder)
        written += DERIVED
    return written


def _derive(folder: Path) -> None:
    for name in DERIVED:
        (folder / name).unlink(missing_ok=True)
    _credentials(folder, passwords(folder))


def save_password(folder: Path, principal: str, password: str) -> None:
    """``principal``'s password file, replaced at once (never half written); the files written
    from the passwords follow when it is one of PRINCIPALS."""
    fresh = folder / f".{principal}.password.new"
    fresh.unlink(missing_ok=True)
    _write(fresh, password + "\n", private=True)
    os.replace(fresh, folder / f"{principal}.password")
    if principal in PRINCIPALS:
        _derive(folder)


def passwords(folder: Path) -> dict[str, str]:
    return {p: (folder / f"{p}.password").read_text().strip() for p in PRINCIPALS}


def client_variables(principal: str, folder: Path) -> dict[str, str]:
    """The variables docker-compose.secure.yml gives the app of ``principal`` (README.md,
    "Secure it"), with this folder's files."""
    return {
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": SCRAM,
        "KAFKA_SASL_USERNAME": principal,
        "KAFKA_SASL_PASSWORD_FILE": str(folder / f"{principal}.password"),
        "KAFKA_SSL_CA_LOCATION": str(folder / "ca.pem"),
    }
