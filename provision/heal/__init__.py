"""`cluster heal`: the handler of the group's lifecycle hooks. A terminating host is drained before it dies; a host
that never confirms its join is reported with the reason it recorded; a host whose node stays NotReady is reported
Unhealthy, within the storm guard's limit."""
