#!/bin/bash
# Boot script of a host of cluster demo, rendered by `cluster render` (do not edit it on a host).
# It installs security updates first, then the container runtime and kubelet, joins the cluster, installs the health
# agent, and only then tells the auto-scaling group that the host is ready. On any failure it records the failing
# step and the last log lines under $RECORDS/<instance-id>/boot (where `cluster` reads them), abandons the launch and
# signals failure. Safe to run twice: a finished step leaves a marker and is skipped on the next run, which is also
# how the script resumes after the reboot that a new kernel needs.
set -Eeuo pipefail

# Every value rendered from the configuration is assigned here, shell-quoted, and used only through these variables.
readonly CLUSTER=demo
readonly REGION=eu-west-1
readonly STACK=cluster-demo
readonly GROUP_RESOURCE=HostGroup
readonly LAUNCH_HOOK=host-launch
readonly RECORDS=/cluster/demo/hosts
readonly NODE_LABELS=example.com/pool=workers
readonly KUBELET_WAIT_ATTEMPTS=60
readonly K8S_VERSION=1.34
readonly API_ENDPOINT=10.0.0.10:6443
readonly CA_CERT_HASH=sha256:0000000000000000000000000000000000000000000000000000000000000000
readonly TOKEN_PARAMETER=/cluster/demo/join-token
readonly RELEASE=latest
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
  command -v containerd >/dev/null || dnf -y install containerd
  mkdir -p "$ROOT/etc/containerd"
  containerd config default | sed 's/SystemdCgroup = false/SystemdCgroup = true/' >"$ROOT/etc/containerd/config.toml"
  systemctl enable --now containerd
}

step_kubelet() {
  mkdir -p "$ROOT/etc/modules-load.d" "$ROOT/etc/sysctl.d" "$ROOT/etc/yum.repos.d"
  printf 'overlay\nbr_netfilter\n' >"$ROOT/etc/modules-load.d/kubernetes.conf"
  modprobe overlay
  modprobe br_netfilter
  printf 'net.bridge.bridge-nf-call-iptables = 1\nnet.ipv4.ip_forward = 1\n' >"$ROOT/etc/sysctl.d/kubernetes.conf"
  sysctl --system >/dev/null
  local repo="https://pkgs.k8s.io/core:/stable:/v$K8S_VERSION/rpm/"
  printf '[kubernetes]\nname=Kubernetes\nbaseurl=%s\nenabled=1\ngpgcheck=1\ngpgkey=%srepodata/repomd.xml.key\n' \
    "$repo" "$repo" >"$ROOT/etc/yum.repos.d/kubernetes.repo"
  dnf -y install kubelet kubeadm
  systemctl enable kubelet
}

step_join() {
  local token node_name az
  node_name=$(imds local-hostname)
  az=$(imds placement/availability-zone)
  # The token is read at boot and goes only into a root-only file that kubeadm reads: never into this script,
  # a command line or the log.
  token=$(aws ssm get-parameter --name "$TOKEN_PARAMETER" --with-decryption --query Parameter.Value --output text)
  (
    umask 077
    cat >"$STATE/join.yaml" <<EOF
apiVersion: kubeadm.k8s.io/v1beta4
kind: JoinConfiguration
discovery:
  bootstrapToken:
    apiServerEndpoint: "$API_ENDPOINT"
    token: "$token"
    caCertHashes: ["$CA_CERT_HASH"]
nodeRegistration:
  name: "$node_name"
  kubeletExtraArgs:
    - name: provider-id
      value: "aws:///$az/$INSTANCE_ID"
    - name: node-labels
      value: "$NODE_LABELS"
EOF
  )
  kubeadm join --config "$STATE/join.yaml"
  rm -f "$STATE/join.yaml"
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
