"""Findings of checkov (run on both rendered modes by tests/test_checkov.py) that the template accepts on purpose,
each with its reason, written where checkov reads it: the resource's ``Metadata``. Anything checkov reports that is
not accepted here fails the tests, so a new finding is either fixed or explained."""

from __future__ import annotations

from troposphere import AWSObject

# check id -> why the template is right as it is
SQS_MANAGED_ENCRYPTION = (
    "CKV_AWS_27",
    "encrypted at rest with SSE-SQS (SqsManagedSseEnabled), which checkov does not recognise; a KMS key would have to "
    "be a customer key, since EventBridge cannot deliver to a queue under the AWS-managed alias/aws/sqs",
)
EKS_DEFAULT_ENVELOPE_ENCRYPTION = (
    "CKV_AWS_58",
    "EKS envelope-encrypts all Kubernetes API data, secrets included, with an AWS-owned KMS key on every supported "
    "version (1.28 and later; the schema allows 1.31 and later); control_plane.secrets_kms_key sets a key of your own",
)


def accept(resource: AWSObject, *findings: tuple[str, str]) -> AWSObject:
    """Mark ``findings`` (check id, reason) as accepted on ``resource``; returns it, for use inline."""
    resource.Metadata = {"checkov": {"skip": [{"id": check, "comment": reason} for check, reason in findings]}}
    return resource
