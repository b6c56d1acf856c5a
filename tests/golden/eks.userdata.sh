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
readonly REPAIR_TAG=cluster:repair
readonly REPAIR_PATH=/cluster/batch/repair
readonly MAX_UNHEALTHY=20%
readonly CLAIM_GRACE=600

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
  declare -p INSTANCE_ID REGION HEALTH_TAG CHECKS FAILURES DISK_MIN_FREE REPAIR_TAG REPAIR_PATH MAX_UNHEALTHY \
    CLAIM_GRACE >"$ROOT/etc/cluster/health-agent.env"
  # userdata/health-agent.sh of the `cluster` that rendered this, without its comment lines, gzipped.
  base64 -d <<'AGENT' | gunzip >"$ROOT/usr/local/bin/cluster-health-agent"
H4sIAAAAAAACA71Y+2/bSA7+XX8Foyi1lUSVHezeI41ya6RpY7RNizg93G3qM2RpYguRJZ9mlNZ1
vX/7kfPQw05397C4Q4BYDw6H/Mj5SGp/z58mmT8N+dziTIBX5rBMluw+TFKryHMR2M764u3H0e3l
zeTq/eh2cvP+/e2pt7Gt52A7JOEzEflRWnLBCn/OwlTMvXDGMvGcZY+2xUUoWKBFH8PCT5OpEfeU
uG0tHuKkAG+JKqW8bVnRnEUPk4dyylImui6sLQC+wlWLSKSQcC+MRPLIwPP+XSZouZaEZ88gKosU
PH6P7xbhF08kCwY/wlyI5anv90/+/LyHf/3Tfu/kh79oi7/CuR+zRz8r09Ta6M2jPBNhkrFiUpQZ
afkdZlRr4kpNnPAHvTLNozCFkrMYb+gncLox2ZmXYlmKYBkhbuDDN0Al6EMGfbpGaOIIOj3vrx0X
F3a7/V4PPKkAzgN4ORy9mbwbXk9e3Vxeui5ubC3DgrNJlIbJQm9dsDAGr4B5nsasgFDABM7Ozmyn
b+Pbuztw9JsggMQ7JBwdFAp+gX/d4cbjIwfGY1IdoSbBWg6xosgLvJO/6FL4maNPBZsleYYhvbl8
PXx/bQPnC0AvPTQuXDCMPwpleAVkBF6L1ZLBSBRJNqM3uZc/suJzkQiC9zFMS5KUPtnwCbcDODl/
1m9EziWrCybKIoOe9kraRE4dfjDbDlICY3X5JeGCH6Jb8O0bejKbkUUYwlZyqlwGW+5Lljl9oNPB
4lOt3Jboyk37BFAYLxLRwmdW5OUSUtyOFBQsyouYQ8x4UmAEJQTKvSSL2RdIYpS9Z9EqShkoK2Ce
zOZBD7L8M0ZwySvV3gAWbDFlBQ9wSy5y1EhX8zCLCT55LQMrBVLMVfzF5dImjFWEQdanzpfPbES1
RhQlk3sC0vuKYlpgPH4BYs4yGQOj6DtBD0uRc7SUPEePoyKZMo8eevqpl2S4exYxWm6uvQQBsp3h
9eh2cH1xORm+NCEHedRYsYLOALWMlJKh0XHXGz9vPH9Nxl0jwJ3qkIFgX4RLIddBO5F6ycWsdhET
qbreC+A6z5hOlNYqFs3zWvC8DSRK3CcUKRX4P4KRVEhrd5/KI8RrIxRMT4EkwZAI3b1UuXcRLsMo
EatjqAHEt+ZmGB/DW5OJI/LsGK5kPtJNycfjTrXdr4C7liKGgHTay2ef53iQqjdP5P0LiHMddpOD
SWzrSOjEv8NHY6ww9VrH1BVaF2Po8GKj2E7HwnCeOYNtmtuyPwo56nw3+Mfk4/XV5eDt7dU/8aRK
5YcHdKbwvGNwu0bZITjrlvTBp4MNsjqytuvCixdqZbWwrVi+ZjyMJNFLEeL4vitRVUv6knEki/w6
285Yg225N13hHZKJp35I9sNgeDP5MLi9sqUOLJ2cytlWElXUKdODztMx/J0Ya/wb50oFePhqFDid
T6JThbrmvCrCCuU1vdlvW+ZvDNxYe9NccP/QUN2dXrB/6G/GgaNYVCMMFQniAlpibu+e3qWWbqoC
2Af7jLY99890iRThA8uAZOG+yBfnKtF00CjfVK7pENFb5G0q9XiC4OiAE6uSxsCWHIH1SRM/xW+9
p137abyxK3SQhPdkxirJ3Xzdg0bNJzUGILlAqqooG2SbkmToIHqX5YJewawMi7jDjwHticMF1j0s
cRkjL6McGyCGbKBua/+lOklyIOsSlijUeJ+nKRYqUlqBKpHCfAjVZuQ+8HDFQeT4NJdFigMmO0LV
4AZFy866jp30x9fdyhhbUQIA6brbJQPgDIX3K2nE0HUbJLKF0fe0bmyCdIrZ+mBSiZxz9B5HdByb
5AKmxhq4A63JlBbTXGEp2apqKnoyG9RaE27jecVy2x5ry9ZS/47YRu41zEaseEwipnl7ZTbsdqmV
8KgPPIOLt4Phu8nrm8HFJaG1aaUKtQxPukX8pLLxTPGSoijZqRBS+NtASiaJhivJJgVbhgn2iut9
qR/jZNUUT2jICOCds1YG0DPje80xPUtZofW1LamaMsx3injQgh4cQkB2d+YUGn8C6L2AlmuIFPmj
nx4dNZJKGW3MVDjVdpqD1owqSbdPp5Jvn1DZZrc52lfspxbZO+pZ2kibrYSsz8mTimvuMydhW8EW
gfz3Lf73/dju/Ou237R8sDsANOY15TtnW9zW5Kad81VnYDN96nRt5JdO2maLrwYAom9KGznmEXk7
F1eXF29GOjVUQTMvpVY9pLrQmm5NwdqZN43czguzgkZLI0TXdfdAyWGsdNSFtsW2pEOS0rf6f5Ir
C8ZbIwBpkm1uz7Uao4DS2ZoFlEqCDAMYJ5EIVB+2snR0zJ5deVGhbaRt0okpcOqslfZ92CDCiaW7
bLmq0WVX5lp4kifUfpga65VYZl/dHtz+7FppyOkrhhEBR28HZnmgFZttaEFjF3lrWTpdMOQIgvEA
G7NXg+HbjzeXI1cOn4jOHnisQhRX5YXYwkmXft3M4UWdjbIhkANklUB/M8nTcw0j/8aoWmYadwjv
6Qgq/3Q6qGzh0DU4IJMpK+nwYTFGI+3GwbObE4eeZLv6uMgiLpn5mBoTc4ryeyori5zjS8WeZUbF
T712ba0bcfwd8xDHFraaCvUw3JoTvzcmEmdoXLicVuBjhYv8usDneZnGuDtfskjgMBWiviUrkjxu
UR0gKmU0341p9V4Hz7zQzzX1gDms/f9l/Aj3OUvpo0QViFYY5xiOLndboTjejhPe5ogqul+sCPxw
hrSDj2TLltHpQQIyfmuvade2o4f/H0dlG4lldNHyU3axxDRpLDvbqZ4vuyRO+Sa/2XAIp1hmqAPF
RnPl/iGPZeMvi6/hhQA7iIoQ7DbJmtg0v7LYtILUNmlC74YDbVgQC1oinOnPSkuslOIeOmv7DVvZ
p2AfcPsYbDmS6dtNR31Ww92N9AGnZye2/qQYQWfg/Rx6X3GOgKPg+eTU/8nrQGfSQYEIBzqU6Hsn
P/4JT+yGNuea/aRPOii2amlbHi7LKY7Zc2K9tpMN56Q6p4s/uEzNvpPbwWvb8K9LHlftDM1SCjX5
Xcbc7G79NLiNfTHYQaO8GEtwFqDf0yOHfo5hY0zTXYs2TedfXUymq0DmsrNGxadHWj3+933wjzYb
27W3HCH9tm7FvkN/LDrRXZpH0lKE52URsZ1vYp6SsO+k3nHdo+laVkXpfDc4jYbbwKZ6Vr3WPDzf
AldW5C/IFj3rP8tSqts/GAAA
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
