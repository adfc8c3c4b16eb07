"""The secured profile's ACLs, from secure/acls.conf: each line the options of one
``kafka-acls.sh --add``, which kafka-init runs in Docker; here they become AclBindings for the
admin client, so that both paths grant the same. A line is split on spaces, unquoted, as
secure/grant-acls splits it for the shell."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

from localcluster.errors import ClusterError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # a line's mistake, named with its line, not an exit
        raise ClusterError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="kafka-acls.sh --add", add_help=False)
    parser.add_argument("--allow-principal", required=True)
    parser.add_argument("--operation", action="append", required=True)
    resource = parser.add_mutually_exclusive_group(required=True)
    resource.add_argument("--topic")
    resource.add_argument("--group")
    resource.add_argument("--cluster", action="store_true")
    parser.add_argument("--resource-pattern-type", default="literal")
    return parser


def _operation(name: str) -> AclOperation:
    """``DescribeConfigs`` (kafka-acls.sh) is AclOperation.DESCRIBE_CONFIGS."""
    try:
        return AclOperation[re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper()]
    except KeyError:
        raise ClusterError(f"unknown operation {name!r}") from None


def _bindings(args: argparse.Namespace) -> list[AclBinding]:
    if args.cluster:
        kind, name = ResourceType.BROKER, "kafka-cluster"
    elif args.topic:
        kind, name = ResourceType.TOPIC, args.topic
    else:
        kind, name = ResourceType.GROUP, args.group
    pattern = ResourcePatternType[args.resource_pattern_type.upper()]
    allow = AclPermissionType.ALLOW
    return [
        AclBinding(kind, name, pattern, args.allow_principal, "*", _operation(op), allow)
        for op in args.operation
    ]


def load(path: Path) -> list[AclBinding]:
    """Every binding the file grants; ClusterError naming the line of a wrong one."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ClusterError(f"cannot read the ACLs file {path}: {exc.strerror}") from None
    parser, found = _parser(), []
    for number, line in enumerate(lines, 1):
        if line.strip() and not line.lstrip().startswith("#"):
            try:
                found += _bindings(parser.parse_args(line.split()))
            except ClusterError as exc:
                raise ClusterError(f"{path}:{number}: {exc}") from None
    return found
