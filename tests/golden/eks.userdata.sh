#!/bin/bash
# Boot script of a host of cluster batch, rendered by `cluster render` (do not edit it on a host).
# It installs security updates first, then the container runtime and kubelet, joins the cluster, installs the health
# agent, and only then tells the auto-scaling group that the host is ready. On any failure it records the failing
# step and the last log lines under $RECORDS/<instance-id>/boot (where `cluster` reads them), abandons the launch and
# signals failure. Safe to run twice: a finished step leaves a marker and is skipped on the next run, which is also
# how the script resumes after the reboot that a new kernel needs.
set -Eeuo pipefail

# Every value rendered from the configuration is assigned here, shell-quoted, and used only through these variables.
readonly CLUSTER=batch
readonly REGION=us-west-2
readonly STACK=cluster-batch
readonly GROUP_RESOURCE=HostGroup
readonly LAUNCH_HOOK=host-launch
readonly RECORDS=/cluster/batch/hosts
readonly NODE_LABELS=example.com/pool=batch,team=data
readonly KUBELET_WAIT_ATTEMPTS=60
readonly EKS_CLUSTER=batch
readonly RELEASE=2023.6.20241010
readonly CHECKS='kubelet container_runtime disk'
readonly FAILURES=3
readonly INTERVAL=30
readonly DISK_MIN_FREE=10
readonly HEALTH_TAG=cluster:health

# Tests run the script with CLUSTER_HOST_ROOT set to a scratch directory; on a host it is empty.
readonly ROOT="${CLUSTER_HOST_ROOT:-}"
readonly STATE="$ROOT/var/lib/cluster-bootstrap"
readonly LOG="$ROOT/var/log/cluster-bootstrap.log"
export AWS_DEFAULT_REGION="$REGION"
STEP=metadata
INSTANCE_ID=unknown

mkdir -p "$STATE" "${LOG%/*}"
exec > >(tee -a "$LOG") 2>&1

log() { printf '%s cluster-bootstrap: %s\n' "$(date -u +%FT%TZ)" "$*"; }

imds() {  # IMDSv2 only: a session token first, then the path asked for
  local token
  token=$(curl -sSf --retry 5 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' \
    http://169.254.169.254/latest/api/token)
  curl -sSf --retry 5 -H "X-aws-ec2-metadata-token: $token" "http://169.254.169.254/latest/meta-data/$1"
}

finish_launch() {  # $1: CONTINUE or ABANDON. No action is waiting when the script runs a second time.
  local group
  if group=$(aws autoscaling describe-auto-scaling-instances --instance-ids "$INSTANCE_ID" \
    --query 'AutoScalingInstances[0].AutoScalingGroupName' --output text) &&
    aws autoscaling complete-lifecycle-action --auto-scaling-group-name "$group" \
      --lifecycle-hook-name "$LAUNCH_HOOK" --instance-id "$INSTANCE_ID" --lifecycle-action-result "$1"; then
    log "launch lifecycle action completed with $1"
  else
    log "no launch lifecycle action was waiting for $1"
  fi
}

signal_stack() {  # $1: SUCCESS or FAILURE. Only a stack create or update waits for it; otherwise nobody listens.
  aws cloudformation signal-resource --stack-name "$STACK" --logical-resource-id "$GROUP_RESOURCE" \
    --unique-id "$INSTANCE_ID" --status "$1" >/dev/null 2>&1 || log "no stack operation is waiting for a signal"
}

on_error() {
  local rc=$?
  trap - ERR
  set +e
  rm -f "$STATE/join.yaml"
  log "step $STEP failed (exit $rc)"
  local record
  record="$(printf 'failed step=%s exit=%s at=%s\n' "$STEP" "$rc" "$(date -u +%FT%TZ)")
$(tail -n 40 "$LOG" | tail -c 3000)"
  aws ssm put-parameter --name "$RECORDS/$INSTANCE_ID/boot" --type String --overwrite --value "$record" >/dev/null
  finish_launch ABANDON
  signal_stack FAILURE
  exit "$rc"
}
trap on_error ERR

run() {  # run STEP: runs step_STEP once; its marker makes a later run skip it
  STEP=$1
  if [[ -e "$STATE/$1.done" ]]; then
    log "step $1: done before"
    return
  fi
  log "step $1"
  "step_${1//-/_}"
  touch "$STATE/$1.done"
}

step_security_updates() {
  dnf -y --releasever="$RELEASE" upgrade --security
  if ! dnf needs-restarting -r >/dev/null; then
    log "the updates need a reboot; this script resumes after it"
    touch "$STATE/security-updates.done"
    install -D -m 0700 "$0" "$ROOT/var/lib/cloud/scripts/per-boot/cluster-bootstrap"
    reboot
    exit 0
  fi
}

step_container_runtime() {
  command -v containerd >/dev/null || { log "this image has no containerd: use an EKS-optimized AMI (hosts.ami)"; return 1; }
}

step_kubelet() {
  command -v nodeadm >/dev/null || { log "this image has no nodeadm: use an EKS-optimized AMI (hosts.ami)"; return 1; }
  command -v kubelet >/dev/null
}

step_join() {
  local details endpoint authority cidr
  details=$(aws eks describe-cluster --name "$EKS_CLUSTER" --output text \
    --query 'cluster.[endpoint,certificateAuthority.data,kubernetesNetworkConfig.serviceIpv4Cidr]')
  read -r endpoint authority cidr <<<"$details"
  cat >"$STATE/nodeconfig.yaml" <<EOF
apiVersion: node.eks.aws/v1alpha1
kind: NodeConfig
spec:
  cluster:
    name: "$EKS_CLUSTER"
    apiServerEndpoint: "$endpoint"
    certificateAuthority: "$authority"
    cidr: "$cidr"
  kubelet:
    flags: ["--node-labels=$NODE_LABELS"]
EOF
  nodeadm init --config-source "file://$STATE/nodeconfig.yaml"
}

step_kubelet_healthy() {
  local attempt
  for ((attempt = 0; attempt < KUBELET_WAIT_ATTEMPTS; attempt++)); do
    curl -sf --max-time 5 http://127.0.0.1:10248/healthz >/dev/null && return 0
    sleep 5
  done
  log "kubelet did not become healthy; see: journalctl -u kubelet"
  return 1
}

step_health_agent() {
  mkdir -p "$ROOT/etc/cluster" "$ROOT/usr/local/bin" "$ROOT/etc/systemd/system"
  declare -p INSTANCE_ID REGION HEALTH_TAG CHECKS FAILURES DISK_MIN_FREE >"$ROOT/etc/cluster/health-agent.env"
  cat >"$ROOT/usr/local/bin/cluster-health-agent" <<'AGENT'
#!/bin/bash
# cluster health agent, run by cluster-health-agent.timer. It checks the kubelet, the container runtime and the root
# disk; after FAILURES consecutive failed runs it reports this host Unhealthy to its auto-scaling group, which replaces
# it. Its last verdict is kept in /var/lib/cluster-health/last and published, when it changes, as the HEALTH_TAG tag of
# this host's own instance: `cluster status` and `cluster doctor` read every host's verdict from the one paged
# DescribeInstances they make anyway, whatever the size of the fleet.
set -uo pipefail
root="${CLUSTER_HOST_ROOT:-}"
# shellcheck disable=SC1091  # written by the boot script
. "$root/etc/cluster/health-agent.env"
state="$root/var/lib/cluster-health"
mkdir -p "$state"

check_kubelet() {
  systemctl is-active --quiet kubelet && curl -sf --max-time 5 http://127.0.0.1:10248/healthz >/dev/null
}
check_container_runtime() {
  systemctl is-active --quiet containerd
}
check_disk() {
  local used
  used=$(df --output=pcent / | tail -n 1 | tr -dc '0-9')
  ((100 - used >= DISK_MIN_FREE))
}

failed=""
for check in $CHECKS; do
  case $check in
    kubelet) check_kubelet ;;
    container_runtime) check_container_runtime ;;
    disk) check_disk ;;
  esac || failed="$failed $check"
done
count=$(cat "$state/failures" 2>/dev/null || echo 0)
if [[ -z "$failed" ]]; then
  count=0
  verdict=healthy
else
  count=$((count + 1))
  verdict="failing:${failed# }"
fi
echo "$count" >"$state/failures"
last="$(date -u +%FT%TZ) $verdict failures=$count"
echo "$last" >"$state/last"

# The group ignores a report that respects its health-check grace period while the period lasts, and "reported" would
# then stop every later one. The agent runs only once the boot script succeeded, so that grace is not needed here.
if ((count >= FAILURES)) && [[ ! -e "$state/reported" ]]; then
  logger -t cluster-health-agent "unhealthy after $count failed checks ($verdict); reporting to the auto-scaling group"
  aws --region "$REGION" autoscaling set-instance-health --instance-id "$INSTANCE_ID" --health-status Unhealthy \
    --no-should-respect-grace-period && touch "$state/reported"
fi
if [[ "$verdict" != "$(cat "$state/published" 2>/dev/null)" ]]; then
  # A tag value holds at most 256 characters, of letters, digits, spaces and + - = . _ : / @ (the check names and the
  # time already are); anything else becomes "_", which also keeps the JSON below well formed.
  value=$(printf '%s' "$last" | tr -c 'A-Za-z0-9 +=._:/@-' '_' | cut -c 1-256)
  aws --region "$REGION" ec2 create-tags --resources "$INSTANCE_ID" \
    --tags "[{\"Key\": \"$HEALTH_TAG\", \"Value\": \"$value\"}]" && echo "$verdict" >"$state/published"
fi
exit 0
AGENT
  chmod 0755 "$ROOT/usr/local/bin/cluster-health-agent"
  cat >"$ROOT/etc/systemd/system/cluster-health-agent.service" <<'EOF'
[Unit]
Description=cluster health agent: reports this host Unhealthy to its auto-scaling group when it stays sick
[Service]
Type=oneshot
ExecStart=/usr/local/bin/cluster-health-agent
EOF
  cat >"$ROOT/etc/systemd/system/cluster-health-agent.timer" <<EOF
[Unit]
Description=Run the cluster health agent every ${INTERVAL}s
[Timer]
OnBootSec=${INTERVAL}s
OnUnitActiveSec=${INTERVAL}s
[Install]
WantedBy=timers.target
EOF
  systemctl daemon-reload
  systemctl enable --now cluster-health-agent.timer
}

step_ready() {
  finish_launch CONTINUE
  signal_stack SUCCESS
  rm -f "$ROOT/var/lib/cloud/scripts/per-boot/cluster-bootstrap"
}

log "cluster $CLUSTER: bootstrap starting"
INSTANCE_ID=$(imds instance-id)
for step in security-updates container-runtime kubelet join kubelet-healthy health-agent ready; do
  run "$step"
done
STEP=finished
log "host $INSTANCE_ID joined cluster $CLUSTER"
