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
