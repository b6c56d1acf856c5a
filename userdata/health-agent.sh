#!/bin/bash
# cluster health agent, run by cluster-health-agent.timer. It checks the kubelet, the container runtime and the root
# disk; after FAILURES consecutive failed runs it reports this host Unhealthy to its auto-scaling group, which replaces
# it. Its last verdict is kept in /var/lib/cluster-health/last and published, when it changes, as the HEALTH_TAG tag of
# this host's own instance: `cluster status` and `cluster doctor` read every host's verdict from the one paged
# DescribeInstances they make anyway, whatever the size of the fleet.
#
# The storm guard (provision/heal/slots.py holds the same steps in Python, for `cluster heal`): at most MAX_UNHEALTHY
# hosts of the group (a count, or a percentage of its desired capacity) are under repair at once. A host reports only
# while it holds one of that many slots, SSM parameters below REPAIR_PATH that only one claimer can create; otherwise
# its repair is held and tried again on the next run. Where it stands goes in the REPAIR_TAG tag: held, reported, or
# clear when it recovered while held.
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

# A claim, "<instance-id> <epoch seconds> <by>", into holder and at; 1 when the value is not one.
parse_claim() {
  read -r holder at _ <<<"$1"
  [[ $holder == i-* && $at =~ ^[0-9]+$ ]]
}

# Create parameter $1 holding $claim, only if it does not exist (no overwrite): of hosts racing for the same name,
# exactly one wins. Losing the race is no error; anything else is logged.
create() {
  local error
  error=$(aws --region "$REGION" ssm put-parameter --name "$1" --type String --no-overwrite --value "$claim" \
    2>&1 >/dev/null) && return 0
  [[ $error == *ParameterAlreadyExists* ]] || logger -t cluster-health-agent "claiming $1 failed: $error"
  return 1
}

# Sets slot, limit and in_repair. Returns 0 when this host holds a repair slot (claimed now, or before: it has not
# reported yet), 1 when its repair is held because the limit is reached, 2 when the guard could not be read (held too:
# without the guard, a fault on every host would have them all replaced at once).
admit() {
  local group listing records desired name value index id lifecycle health high=0 now hops
  local -A members=() stored=() handover=() holders=() live=()
  group=$(cat "$state/group" 2>/dev/null)
  if [[ -z "$group" ]]; then
    group=$(aws --region "$REGION" autoscaling describe-auto-scaling-instances --instance-ids "$INSTANCE_ID" \
      --query 'AutoScalingInstances[0].AutoScalingGroupName' --output text) || return 2
    [[ -n "$group" && "$group" != None ]] || return 2
    echo "$group" >"$state/group"
  fi
  # The desired capacity, then one line per member: instance id, lifecycle state, health.
  listing=$(aws --region "$REGION" autoscaling describe-auto-scaling-groups --auto-scaling-group-names "$group" \
    --query 'AutoScalingGroups[0].[DesiredCapacity, Instances[].[InstanceId, LifecycleState, HealthStatus]]' \
    --output text) || return 2
  {
    read -r desired
    while read -r id lifecycle health; do
      [[ -z "$id" ]] || members[$id]="$lifecycle $health"
    done
  } <<<"$listing"
  [[ $desired =~ ^[0-9]+$ ]] || return 2
  case $MAX_UNHEALTHY in
    *%) limit=$((desired * ${MAX_UNHEALTHY%\%} / 100)) ;;
    *) limit=$MAX_UNHEALTHY ;;
  esac
  ((limit >= 1)) || limit=1
  records=$(aws --region "$REGION" ssm get-parameters-by-path --path "$REPAIR_PATH" --recursive \
    --query 'Parameters[].[Name, Value]' --output text) || return 2
  while IFS=$'\t' read -r name value; do
    case ${name#"$REPAIR_PATH"/} in
      slots/*) stored[${name##*/}]=$value ;;
      handovers/*/*) handover[${name#"$REPAIR_PATH"/handovers/}]=$value ;;  # "<slot>/<holder taken over from>"
    esac
  done <<<"$records"
  now=$(date +%s)
  slot=""
  for index in "${!stored[@]}"; do
    if ! [[ $index =~ ^[0-9]+$ ]] || ! parse_claim "${stored[$index]}"; then
      continue  # not the guard's, or damaged: never counted, never taken over
    fi
    hops=0  # follow the handovers from what the slot says to who holds it now
    while [[ -n ${handover[$index/$holder]:-} ]] && ((hops < ${#handover[@]})); do
      parse_claim "${handover[$index/$holder]}" || break
      hops=$((hops + 1))
    done
    holders[$index]=$holder
    [[ $holder != "$INSTANCE_ID" ]] || slot=$index
    # Under repair: still a member, and reported Unhealthy or on its way out, or claimed so lately that its report
    # may be on its way.
    if [[ -n ${members[$holder]:-} ]] &&
      { [[ ${members[$holder]} != "InService Healthy" ]] || ((now - at < CLAIM_GRACE)); }; then
      live[$index]=$holder
      ((index < limit)) || high=$((high + 1))
    fi
  done
  in_repair=${#live[@]}
  # This host won a slot before and has not reported yet (unless that claim is so old it lapsed).
  [[ -z "$slot" || -z ${live[$slot]:-} ]] || return 0
  ((in_repair < limit)) || return 1
  claim="$INSTANCE_ID $now agent"
  # Slots beyond the limit belong to hosts admitted when the group was larger; while they last, fewer may be claimed.
  for ((index = 0; index < limit - high; index++)); do
    [[ -z ${live[$index]:-} ]] || continue
    if [[ -z ${stored[$index]:-} ]]; then
      create "$REPAIR_PATH/slots/$index" || continue
    elif [[ -n ${holders[$index]:-} ]] && create "$REPAIR_PATH/handovers/$index/${holders[$index]}"; then
      # A shortcut for the next reader (who follows the handovers anyway, so a late write here changes nothing).
      aws --region "$REGION" ssm put-parameter --name "$REPAIR_PATH/slots/$index" --type String --overwrite \
        --value "$claim" >/dev/null
    else
      continue
    fi
    slot=$index
    in_repair=$((in_repair + 1))
    return 0
  done
  return 1
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
now_text=$(date -u +%FT%TZ)
last="$now_text $verdict failures=$count"
echo "$last" >"$state/last"

# The group ignores a report that respects its health-check grace period while the period lasts, and "reported" would
# then stop every later one. The agent runs only once the boot script succeeded, so that grace is not needed here.
repair=""
if ((count >= FAILURES)) && [[ ! -e "$state/reported" ]]; then
  slot="" limit="" in_repair=""
  admit
  case $? in
    0)
      logger -t cluster-health-agent "unhealthy after $count failed checks ($verdict); reporting to the" \
        "auto-scaling group (repair slot $slot, $in_repair of at most $limit under repair)"
      if aws --region "$REGION" autoscaling set-instance-health --instance-id "$INSTANCE_ID" \
        --health-status Unhealthy --no-should-respect-grace-period; then
        touch "$state/reported"
        repair=reported
      fi
      ;;
    1)
      logger -t cluster-health-agent "unhealthy after $count failed checks ($verdict); repair held: $in_repair" \
        "host(s) under repair, at most $limit at once; trying again on the next run"
      repair=held
      ;;
    *)
      logger -t cluster-health-agent "unhealthy after $count failed checks ($verdict); repair held: the storm" \
        "guard could not be read (the aws errors above say why); trying again on the next run"
      repair=held
      ;;
  esac
elif ((count == 0)) && [[ "$(cat "$state/repair" 2>/dev/null)" == held ]]; then
  repair=clear
fi

# A tag value holds at most 256 characters, of letters, digits, spaces and + - = . _ : / @ (the check names and the
# time already are); anything else becomes "_", which also keeps the JSON below well formed.
tag() {
  printf '{"Key": "%s", "Value": "%s"}' "$1" "$(printf '%s' "$2" | tr -c 'A-Za-z0-9 +=._:/@-' '_' | cut -c 1-256)"
}
tags=""
if [[ "$verdict" != "$(cat "$state/published" 2>/dev/null)" ]]; then
  tags=$(tag "$HEALTH_TAG" "$last")
fi
if [[ -n "$repair" && "$repair" != "$(cat "$state/repair" 2>/dev/null)" ]]; then
  why=${failed# }
  tags="${tags:+$tags, }$(tag "$REPAIR_TAG" "$repair $now_text by=agent${why:+ why=${why// /+}}")"
fi
if [[ -n "$tags" ]] && aws --region "$REGION" ec2 create-tags --resources "$INSTANCE_ID" --tags "[$tags]"; then
  echo "$verdict" >"$state/published"
  [[ -z "$repair" ]] || echo "$repair" >"$state/repair"
fi
exit 0
