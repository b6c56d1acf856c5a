"""SSM Parameter Store, typed: the cluster's join token and the hosts' records below the cluster's path."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from botocore.exceptions import ClientError

from provision.aws.session import error_code

if TYPE_CHECKING:
    from mypy_boto3_ssm import SSMClient

DELETE_BATCH = 10  # delete_parameters takes at most ten names


class Parameters:
    def __init__(self, client: SSMClient) -> None:
        self.client = client

    def exists(self, name: str) -> bool:
        try:
            self.client.get_parameter(Name=name)
        except ClientError as error:
            if error_code(error) == "ParameterNotFound":
                return False
            raise
        return True

    def put_secret(self, name: str, value: str, *, kms_key: str | None) -> None:
        """Store ``value`` as a SecureString (the account's aws/ssm key unless ``kms_key``), replacing any old one."""
        if kms_key:
            self.client.put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True, KeyId=kms_key)
        else:
            self.client.put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True)

    def names_under(self, path: str) -> list[str]:
        names: list[str] = []
        paginator = self.client.get_paginator("get_parameters_by_path")
        for page in paginator.paginate(Path=path, Recursive=True):
            names += [parameter["Name"] for parameter in page["Parameters"]]
        return sorted(names)

    def values_under(self, path: str) -> dict[str, str]:
        values: dict[str, str] = {}
        paginator = self.client.get_paginator("get_parameters_by_path")
        for page in paginator.paginate(Path=path, Recursive=True, WithDecryption=False):
            values |= {parameter["Name"]: parameter.get("Value", "") for parameter in page["Parameters"]}
        return values

    def delete(self, names: list[str]) -> None:
        for start in range(0, len(names), DELETE_BATCH):
            self.client.delete_parameters(Names=names[start : start + DELETE_BATCH])

    def create(self, name: str, value: str) -> bool:
        """Create the parameter only if it does not exist (Overwrite=False): exactly one of racing callers wins.
        True when this call created it."""
        try:
            self.client.put_parameter(Name=name, Value=value, Type="String", Overwrite=False)
        except ClientError as error:
            if error_code(error) == "ParameterAlreadyExists":
                return False
            raise
        return True

    def put(self, name: str, value: str, *, tier: Literal["Standard", "Intelligent-Tiering"] = "Standard") -> None:
        self.client.put_parameter(Name=name, Value=value, Type="String", Overwrite=True, Tier=tier)

    def values(self, names: list[str]) -> dict[str, str]:
        """The values of those of these (at most ten) parameters that exist, in one call."""
        found = self.client.get_parameters(Names=names, WithDecryption=False)["Parameters"]
        return {parameter["Name"]: parameter.get("Value", "") for parameter in found}

    def value(self, name: str) -> str | None:
        try:
            return self.client.get_parameter(Name=name)["Parameter"].get("Value")
        except ClientError as error:
            if error_code(error) == "ParameterNotFound":
                return None
            raise

    def remove(self, name: str) -> None:
        try:
            self.client.delete_parameter(Name=name)
        except ClientError as error:
            if error_code(error) != "ParameterNotFound":
                raise
