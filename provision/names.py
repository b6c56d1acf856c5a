"""Names that the template, the user-data and the verbs must agree on. Change one here and all three follow."""

from __future__ import annotations

from dataclasses import dataclass

# Logical ids of the resources other verbs look up in the stack.
HOST_GROUP = "HostGroup"
LAUNCH_TEMPLATE = "HostLaunchTemplate"
HOST_ROLE = "HostRole"
HOST_SECURITY_GROUP = "HostSecurityGroup"
EKS_CLUSTER = "EksCluster"
# The group's lifecycle actions, as EventBridge events in a queue that `cluster heal` consumes.
LIFECYCLE_QUEUE = "LifecycleQueue"
LIFECYCLE_DEAD_LETTER_QUEUE = "LifecycleDeadLetterQueue"
LIFECYCLE_QUEUE_POLICY = "LifecycleQueuePolicy"
LIFECYCLE_EVENT_RULE = "LifecycleEventRule"
HEAL_HANDLER_POLICY = "HealHandlerPolicy"

# The template parameter that names the hosts' image (an SSM path is resolved again at every deploy).
IMAGE_PARAMETER = "ImageId"

# Lifecycle hooks declared on the group. The host completes the launch hook; a roll or `cluster heal` the other.
LAUNCH_HOOK = "host-launch"
TERMINATE_HOOK = "host-terminate"

# Tags every host carries. The fingerprint names the configuration that launched the host: an outdated host is one
# whose fingerprint differs from the stack's current one.
OWN_TAG_PREFIX = "cluster:"
CLUSTER_TAG = "cluster:name"
FINGERPRINT_TAG = "cluster:fingerprint"
# The health agent's last verdict, which each host sets on its own instance (userdata/health-agent.sh).
HEALTH_TAG = "cluster:health"
# Where a host stands with the storm guard (provision/heal/slots.py): `held <time> by=<agent|heal> ...` while its
# repair waits for a turn, `reported <time> ...` once reported Unhealthy, `clear <time>` when it recovered meanwhile.
# Set by the host's agent on its own instance, or by `cluster heal` on the host it judged from the cluster side.
REPAIR_TAG = "cluster:repair"
# The storm guard's one shared number besides its path: a slot's holder still InService and Healthy this long after
# its claim is not under repair (it never reported, or its report never took), and its slot may be taken over.
REPAIR_CLAIM_GRACE_SECONDS = 600
# The name EC2's console shows: "<cluster>-host" on the hosts of group `workers`, "<cluster>-<group>-host" on others.
NAME_TAG = "Name"

# Stack outputs that the other verbs read.
OUTPUT_GROUP = "HostGroupName"
OUTPUT_LAUNCH_TEMPLATE = "LaunchTemplateId"
OUTPUT_ROLE = "HostRoleArn"
OUTPUT_FINGERPRINT = "HostFingerprint"
OUTPUT_PARAMETER_PATH = "ParameterPath"
OUTPUT_EKS_CLUSTER = "EksClusterName"
OUTPUT_LIFECYCLE_QUEUE_URL = "LifecycleQueueUrl"
OUTPUT_HEAL_HANDLER_POLICY = "HealHandlerPolicyArn"


# Host groups. Each group ([groups.<name>], or the one group `workers` of a config without [groups]) has its own
# launch template, auto-scaling group, image parameter and outputs, named by ``group_names``:
# - the group named `workers` keeps the names every stack had before groups existed (HostGroup, HostLaunchTemplate,
#   ImageId; outputs HostGroupName, LaunchTemplateId, HostFingerprint), so that a stack made by an earlier version
#   updates in place: nothing is renamed, so nothing is replaced. Adding groups beside it leaves it as it is.
# - every other group appends its name in CamelCase ("gpu-a" -> "GpuA") to the same stems: HostGroupGpuA,
#   HostLaunchTemplateGpuA, ImageIdGpuA; outputs HostGroupNameGpuA, LaunchTemplateIdGpuA, HostFingerprintGpuA.
#   Two names that give the same suffix in any case ("gpu-a" and "gpua") are refused by the configuration.
DEFAULT_GROUP = "workers"


@dataclass(frozen=True)
class GroupNames:
    """What one host group's resources, parameter and outputs are called in the stack."""

    group: str  # logical id of the auto-scaling group (also the resource its hosts signal)
    launch_template: str
    image_parameter: str
    output_group: str
    output_launch_template: str
    output_fingerprint: str
    hosts: str  # how descriptions call the group's hosts
    host_name: str  # the hosts' Name tag after "<cluster>-"


def group_suffix(group: str) -> str:
    """The part a group adds to its logical ids: "" for `workers`, else its name in CamelCase."""
    if group == DEFAULT_GROUP:
        return ""
    return "".join(part[:1].upper() + part[1:] for part in group.split("-"))


def group_names(group: str) -> GroupNames:
    suffix = group_suffix(group)
    return GroupNames(
        group=f"{HOST_GROUP}{suffix}",
        launch_template=f"{LAUNCH_TEMPLATE}{suffix}",
        image_parameter=f"{IMAGE_PARAMETER}{suffix}",
        output_group=f"{OUTPUT_GROUP}{suffix}",
        output_launch_template=f"{OUTPUT_LAUNCH_TEMPLATE}{suffix}",
        output_fingerprint=f"{OUTPUT_FINGERPRINT}{suffix}",
        hosts="hosts" if not suffix else f"{group} hosts",
        host_name="host" if not suffix else f"{group}-host",
    )


def patch_generation(fingerprint: str) -> int:
    """The patch generation inside a fingerprint `<ami>/<generation>/<digest>` (0 when there is none)."""
    parts = fingerprint.split("/")
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else 0


def join_token_parameter(parameter_path: str) -> str:
    """The SecureString that holds the kubeadm bootstrap token; only its name is ever rendered."""
    return f"{parameter_path}/join-token"


def roll_lock_parameter(parameter_path: str) -> str:
    """The run lock every roll takes (``provision.roll.lock``); heal and doctor read it."""
    return f"{parameter_path}/roll-lock"


def roll_state_parameter(parameter_path: str) -> str:
    """The roll's journal of its progress (``provision.roll.journal``); heal and doctor read it."""
    return f"{parameter_path}/roll-state"


def repair_path(parameter_path: str) -> str:
    """The storm guard's slots and their handovers (``provision.heal.slots``), shared by the hosts' agents and heal."""
    return f"{parameter_path}/repair"


def host_records_path(parameter_path: str) -> str:
    """Below this path a host whose boot failed keeps ``<instance-id>/boot`` (the failed step and its log tail)."""
    return f"{parameter_path}/hosts"
