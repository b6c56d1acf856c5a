"""Optional queue-driven scaling: keep the backlog per in-service host near ``queue_scaling.backlog_per_host``."""

from __future__ import annotations

from troposphere import Ref, Template, autoscaling

from provision.config.schema import QueueScaling


def add_queue_scaling(template: Template, scaling: QueueScaling, group: autoscaling.AutoScalingGroup) -> None:
    """Target tracking on a metric-math expression, as AWS recommends for queue workers: the queue's visible
    messages divided by the group's in-service hosts (the group collects that metric, see ``MetricsCollection``)."""

    def metric(query_id: str, namespace: str, name: str, dimension: str, value: object, stat: str) -> object:
        return autoscaling.TargetTrackingMetricDataQuery(
            Id=query_id,
            ReturnData=False,
            MetricStat=autoscaling.TargetTrackingMetricStat(
                Metric=autoscaling.Metric(
                    Namespace=namespace,
                    MetricName=name,
                    Dimensions=[autoscaling.MetricDimension(Name=dimension, Value=value)],
                ),
                Stat=stat,
            ),
        )

    template.add_resource(
        autoscaling.ScalingPolicy(
            "QueueBacklogScaling",
            AutoScalingGroupName=Ref(group),
            PolicyType="TargetTrackingScaling",
            TargetTrackingConfiguration=autoscaling.TargetTrackingConfiguration(
                TargetValue=float(scaling.backlog_per_host),
                CustomizedMetricSpecification=autoscaling.CustomizedMetricSpecification(
                    Metrics=[
                        metric(
                            "backlog",
                            "AWS/SQS",
                            "ApproximateNumberOfMessagesVisible",
                            "QueueName",
                            scaling.queue_name,
                            "Sum",
                        ),
                        metric(
                            "hosts",
                            "AWS/AutoScaling",
                            "GroupInServiceInstances",
                            "AutoScalingGroupName",
                            Ref(group),
                            "Average",
                        ),
                        autoscaling.TargetTrackingMetricDataQuery(
                            Id="backlog_per_host",
                            Expression="backlog / hosts",
                            Label="Backlog per host",
                            ReturnData=True,
                        ),
                    ]
                ),
            ),
        )
    )
