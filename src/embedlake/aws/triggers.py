"""How objects reach the functions in the template: the bucket's notifications to each
function's queue, or EventBridge rules where the bucket exists already (SAM cannot attach
notifications to a bucket it does not create) or EventBridge is asked for."""

from __future__ import annotations

from typing import Any

from embedlake.aws.cfn import att, key_filter, ref, sub
from embedlake.errors import ConfigError
from embedlake.events import OBJECT_CREATED, OBJECT_REMOVED
from embedlake.functions import FunctionSpec

S3_EVENTS = {OBJECT_CREATED: "s3:ObjectCreated:*", OBJECT_REMOVED: "s3:ObjectRemoved:*"}
_EB_EVENTS = {OBJECT_CREATED: "Object Created", OBJECT_REMOVED: "Object Deleted"}


def object_triggers(spec: FunctionSpec) -> list[tuple[str, str, str]]:
    """(event type, key prefix, key suffix) of each object trigger, without repeats."""
    seen: list[tuple[str, str, str]] = []
    for t in spec.triggers:
        if t.event_type in S3_EVENTS and t.pattern is not None:
            item = (t.event_type, *key_filter(t.pattern))
            if item not in seen:
                seen.append(item)
    return seen


class Triggers:
    """The object-trigger half of the template builder (mixed into it; its state is the
    builder's: resources, outputs, the bucket, the lake prefix, the notifications so far)."""

    res: dict[str, Any]
    outputs: dict[str, Any]
    notifications: list[dict[str, Any]]
    eventbridge: bool
    bucket: Any
    prefix: str

    def _queue(self, cid: str, spec: FunctionSpec, timeout: int, dlq: str) -> dict[str, str]:
        """The function's input queue, fed by the bucket or by EventBridge rules."""
        queue = f"{cid}Queue"
        redrive = {"deadLetterTargetArn": att(dlq, "Arn"), "maxReceiveCount": spec.retries + 1}
        self.res[queue] = {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "VisibilityTimeout": min(6 * timeout, 43_200),  # AWS: six times the function's
                "RedrivePolicy": redrive,
                "SqsManagedSseEnabled": True,
            },
        }
        self.outputs[f"{queue}Url"] = {"Value": ref(queue)}
        sources: list[Any] = []
        for i, (event_type, prefix, suffix) in enumerate(object_triggers(spec)):
            if self.eventbridge:
                detail: dict[str, Any] = {"bucket": {"name": [self.bucket]}}
                if self.prefix + prefix:
                    detail["object"] = {"key": [{"prefix": self.prefix + prefix}]}
                pattern = {
                    "source": ["aws.s3"],
                    "detail-type": [_EB_EVENTS[event_type]],
                    "detail": detail,
                }
                rule = f"{cid}Rule{i}"
                self.res[rule] = {
                    "Type": "AWS::Events::Rule",
                    "Properties": {
                        "EventPattern": pattern,
                        "State": "ENABLED",
                        "Targets": [{"Arn": att(queue, "Arn"), "Id": "queue"}],
                    },
                }
                sources.append(att(rule, "Arn"))
                continue
            rules = [{"Name": "prefix", "Value": self.prefix + prefix}]
            rules += [{"Name": "suffix", "Value": suffix}] if suffix else []
            self._no_overlap(spec.name, S3_EVENTS[event_type], self.prefix + prefix, suffix)
            self.notifications.append(
                {
                    "Event": S3_EVENTS[event_type],
                    "Queue": att(queue, "Arn"),
                    "Filter": {"S3Key": {"Rules": rules}},
                    "_function": spec.name,
                }
            )
        if not sources:
            sources = [sub("arn:${AWS::Partition}:s3:::${Bucket}", Bucket=self.bucket)]
        service = "events.amazonaws.com" if self.eventbridge else "s3.amazonaws.com"
        allow = {
            "Effect": "Allow",
            "Principal": {"Service": service},
            "Action": "sqs:SendMessage",
            "Resource": att(queue, "Arn"),
            "Condition": {"ArnEquals": {"aws:SourceArn": sources}},
        }
        self.res[f"{queue}Policy"] = {
            "Type": "AWS::SQS::QueuePolicy",
            "Properties": {
                "Queues": [ref(queue)],
                "PolicyDocument": {"Version": "2012-10-17", "Statement": [allow]},
            },
        }
        return att(queue, "Arn")

    def _no_overlap(self, name: str, event: str, prefix: str, suffix: str) -> None:
        """S3 refuses two notifications whose filters overlap for the same event type."""
        for other in self.notifications:
            rules = {r["Name"]: r["Value"] for r in other["Filter"]["S3Key"]["Rules"]}
            p, s = rules["prefix"], rules.get("suffix", "")
            if (
                other["Event"] == event
                and (p.startswith(prefix) or prefix.startswith(p))
                and (s.endswith(suffix) or suffix.endswith(s))
            ):
                raise ConfigError(
                    f"functions {other['_function']} and {name} watch overlapping keys, which "
                    "S3 notifications cannot deliver to two queues: use EventBridge notifications"
                )

    def _bucket(self) -> None:
        """The lake bucket, kept when the stack is deleted (raw/ is the audit trail)."""
        config: dict[str, Any] = {"EventBridgeConfiguration": {"EventBridgeEnabled": True}}
        depends = []
        if not self.eventbridge:
            config = {
                "QueueConfigurations": [
                    {k: v for k, v in n.items() if k != "_function"} for n in self.notifications
                ]
            }
            depends = [r for r, v in self.res.items() if v["Type"] == "AWS::SQS::QueuePolicy"]
        block = dict.fromkeys(
            ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"),
            True,
        )
        self.res["LakeBucket"] = {
            "Type": "AWS::S3::Bucket",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            **({"DependsOn": depends} if depends else {}),
            "Properties": {
                "BucketName": self.bucket,
                "PublicAccessBlockConfiguration": block,
                "NotificationConfiguration": config,
            },
        }
        self.outputs["LakeBucket"] = {"Value": ref("LakeBucket")}
