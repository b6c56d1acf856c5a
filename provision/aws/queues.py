"""SQS, typed: the cluster's lifecycle queue as `cluster heal` consumes it (long polling, visibility, delete)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from provision.aws.session import AwsFactory, error_code

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

MAX_VISIBILITY_SECONDS = 43_200  # SQS's limit: a message can be hidden for at most 12 hours
GONE = {"ReceiptHandleIsInvalid", "InvalidParameterValue", "AWS.SimpleQueueService.NonExistentQueue"}


@dataclass(frozen=True)
class Message:
    message_id: str
    receipt: str
    body: str
    receive_count: int  # 1 on the first delivery; the dead-letter queue takes it past the redrive limit


class Queue:
    def __init__(self, client: SQSClient, url: str) -> None:
        self.client = client
        self.url = url

    @classmethod
    def connect(cls, factory: AwsFactory, url: str) -> Queue:
        return cls(factory.client("sqs"), url)

    def receive(self, *, wait_seconds: int, visibility_seconds: int, max_messages: int = 10) -> list[Message]:
        answer = self.client.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=max_messages,
            WaitTimeSeconds=wait_seconds,
            VisibilityTimeout=visibility_seconds,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        return [
            Message(
                message_id=raw.get("MessageId", ""),
                receipt=raw.get("ReceiptHandle", ""),
                body=raw.get("Body", ""),
                receive_count=int(raw.get("Attributes", {}).get("ApproximateReceiveCount", "1")),
            )
            for raw in answer.get("Messages", [])
        ]

    def delete(self, message: Message) -> None:
        try:
            self.client.delete_message(QueueUrl=self.url, ReceiptHandle=message.receipt)
        except ClientError as error:
            if error_code(error) not in GONE:  # deleted already, or the receipt expired: another delivery follows
                raise

    def hide(self, message: Message, seconds: float) -> None:
        """Keep the message from other consumers for ``seconds`` from now (0: visible again at once)."""
        timeout = max(0, min(int(seconds), MAX_VISIBILITY_SECONDS))
        try:
            self.client.change_message_visibility(QueueUrl=self.url, ReceiptHandle=message.receipt,
                                                  VisibilityTimeout=timeout)  # fmt: skip
        except ClientError as error:
            if error_code(error) not in GONE:
                raise

    def depth(self) -> tuple[int, int]:
        """(visible, in flight) messages, approximately, as SQS counts them."""
        attributes = self.client.get_queue_attributes(
            QueueUrl=self.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes.get("ApproximateNumberOfMessages", "0")), int(
            attributes.get("ApproximateNumberOfMessagesNotVisible", "0")
        )
