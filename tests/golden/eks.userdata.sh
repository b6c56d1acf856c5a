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
H4sIAAAAAAACA7VY+1PbSBL+XX9FI0RsA0I2dXsPQNy6CAmuEJLC5Opuic8lpLGtQpZ8mhHgOL6/
/brnoYdNdvfq6ooq9Orp6f66++se7+54D3HqPQR8ZnEmwC0yWMQLNgnixMqzTPi2s7q4/jK8u7wd
X30a3o1vP326O3HXtnUEtkMSHhOhFyYFFyz3ZixIxMwNpiwVRyx9si0uAsF8LfoU5F4SPxhxV4nb
1vwxinNwF6hSytuWFc5Y+Dh+LB5YwkS7AysLgC9x1TwUCcTcDUIRPzFw3X8VMVquJeHNGwiLPAGX
T/DbPHhxRTxn8BPMhFiceF7v+E9HXfzrnfS6x3/4s7b4G5x7EXvy0iJJrLXePMxSEcQpy8d5kZKW
32FGuSYq1UQxf9QrkywMEig4i/CBLr7TjsjOrBCLQviLEHEDD74DKkEfUujRPUIThdDqun9pdXBh
u93rdsGVCuDch7eD4Yfxx8HN+N3t5WWngxtbiyDnbBwmQTzXW+csiMDNYZYlEcshEDCGs7Mz2+nZ
+PX+Hhz9xfchdvcJRweF/H/DP+9x49GBA6MRqQ5Rk2ANh1ieZzk+ySu6FDxz9Cln0zhLMaS3l+8H
n25s4HwO6KWLxgVzhvFHoRTvgIzAe7FcMBiKPE6n9CVzsyeWP+exIHifgqQgSemTDV9xO4Dj8ze9
WuQ6ZHXORJGn0NVeSZvIqf3PZtt+QmAsL19iLvg+ugXfv6Mn0ylZhCFsJKfKZbDlvmSZ0wOqDhad
aOW2RFdu2iOAgmgeiwY+0zwrFpDgdqQgZ2GWRxwixuMcIyghUO7FacReII5QdsLCZZgwUFbALJ7O
/C6k2TNGcMFL1W4f5mz+wHLu45ZcZKiR7mZBGhF88l4GVgokmKt4xeXSJoxViEHWVefJdzaiWiGK
kvGEgHS/oZgWGI1OQcxYKmNgFP0g6EEhMo6WkufocZjHD8yll65+68Yp7p6GjJabezdGgGxncDO8
699cXI4Hb03IQZYay5fQ6qOWoVIyMDruu6Oj2vv3ZNwNAtwqiwwEexEdCnkZNNJKLqaVi5hI5f2O
DzdZynSiNFaxcJZVgudNIFFiElOkVOD/F4ykQlq7/VaWEK+MUDC9BpIEQyJ0/1bl3kWwCMJYLA+h
AhC/modBdAjXJhOH5NkhXMl8pIeCj0atcrtfAXclRQwB6bSX755nWEjll1fy/hSiTIfd5GAc2ToS
OvHv8dUIO0y11jF9hdZFGDq8WSu207EwnGdqsElzG/aHAUedH/t/H3+5ubrsX99d/QMrVSrf36Oa
wnrH4LaNsn1wVg3pva97a2R1ZO1OB05P1cpyYVOx/Mx4EEqilyLE8b2ORFUt6UnGkSzy62w7ZTW2
5e7DEp+QTFx1IdnP/cHt+HP/7sqWOrB1cmpnG0lUUqdMD6qnQ/gbMdboN+pKBXjwbug7ra+iVYa6
4rwywgrlFX3ZbVrmrQ3c2HuTTHBv31DdvV6wu++tR76jWFQjDCUJ4gJaYh7vX9+lkq6rAtgF+4y2
PffOdIsUwSNLgWRhkmfzc5VoOmiUbyrXdIjoK/I2tXqsIDjY48SqpNG3JUdgf9LET/Fb7WjXfh6t
7RIdJOEdmbFKcjtfd6DW80mNAUgukKpKygY5psQpOojepZmgTzAtgjxq8UNAe6Jgjn0PW1zKyMsw
wwGIIRuox8p/qU6SHMi+hC0KNU6yJMFGRUpLUCVSmA+B2ozcBx4sOYgM32aySXHAZEeoatygaNlZ
VbGT/nh6WhnhKEoAIF2322QAnKHwbimNGHY6NRLZwOhHWtc2QfqA2fpoUomcc/QeB1SOdXIB02MN
3L7WZFqLGa6wlWx0NRU9mQ1qrQm38bxkuU2PtWUrqX9LbC33GqRDlj/FIdO8vTQbtts0Srg0B57B
xXV/8HH8/rZ/cUlorRupQiPDq24RP6lsPFO8pChKTiqEFF5rSMkk0XDF6ThniyDGWXG1K/VjnKyK
4gkNGQF8clbKAHpnfK84pmspK7S+piV1CqeI+w3owSEE5HRnqtD440P3FBquIVLkj357cFBLKmW0
MVPhVNlpCq0eVZJuVqeSb1aoHLObHO0p9lOL7C31LKmlzUZCVnXyquKK+0wlbCrYIJD/fsT/sR+b
k3819puRD7YPALXzmvKdsw1uq3PTVn1VGVhPnypda/mlk7Y+4qsDANE3pY085hF5OxdXlxcfhjo1
VEMzH6VWfUjtQON0axrW1nnTyG19MCvoaGmE6L6aHig5jJWOutG22JZ0SFL6xvxPckXOeOMIQJrk
mNvtWLWjgNLZOAsolQQZBjCKQ+GrOWxp6eiYPdvypkTbSNukE1PgxFkp7buwRoRjS0/ZclVtyi7N
tbCSxzR+mB7rFthm393t3f3SsZKA068YRgQcvR2Y5b5WbLahBbVd5KNl6XTBkCMIxgMczN71B9df
bi+HHXn4RHR2wGUlorgqy8UGTrr162EOb6pslAMBbiDPkLWC+63TaZFqqCGYUNUpl3QGqATh0Dau
I3kpw6jesP9SQ64fLKqzlq2Orm1dH7JrSyo+pEnElE02oT4yz7iQPIimn7h/XUORUstTMh3bMODv
OANxHFvLk6A+ADfOhptN1DVwcHkugS8lHNWhMUX3ZlmRRLg3X7BQ4PEpQG0LlsdZ1CA3kRXhbDuG
+qsOlXld0UzJQf+PaBHOM5bQrw6rEnmCuRasGUagzTsN4A9fDQ2+yxBK9DpfEuLBFPkFX8lUSKlM
kGlsq+Yu7a0OtLLNmArwsVeWqW836UStbP6eYNMK0lUvCL0FHt2CnOrdEsFU/4CywJ4gJtBa2R/Y
0j4Be4/bh2DLw4d+XLfUD0i4u5He4/Tu2NY/noV4DHZ/CdxvODHDgX80PvF+dlvQGrdQIMSjC0r0
3OOf/ohZuqbNua5z6ZMOg62Gt4aHi+IBD5Qzqu+mkzXnpDqnjRdcpk5547v+e9swTYc8Lhs3nRoU
avIXCPOwvfXr4Nb2fZ4t/RqRGktw6qXryYFDl0NYG9N0f9am6YyraPNh6cvsdVao+ORAq8f/ngfe
wXptd+wNR0i/rYeOHxQ9C4/1POKStBThWZGHjG+XuJSw76XeUTWNaNYuo3S+HZzaaGlgU9OZXmte
nm+AK3vPC05/Xes/4fdQZikXAAA=
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
