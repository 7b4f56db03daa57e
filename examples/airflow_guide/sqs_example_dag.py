"""The Amazon SQS example of the Airflow guide "Event-driven scheduling", on Herald.

A DAG runs as soon as a message is posted to an SQS queue; its task prints the
message body. Ported from Airflow 3 with these changes only:

- the imports (`from herald import ...` instead of `airflow.sdk` and
  `airflow.providers.common.messaging`);
- the queue URL comes from `HERALD_EXAMPLE_SQS_URL`, by default a queue on a
  local moto server (`moto_server -H 127.0.0.1 -p 5005`, queue `herald-example`).
  On AWS, set it to the queue URL as AWS shows it, for example
  `https://sqs.us-east-1.amazonaws.com/123456789012/my-queue`, with keys in the
  usual AWS variables or in a connection (`conn_id="aws_default"` reads
  `HERALD_CONN_AWS_DEFAULT`);
- `airflow_compat=True`, so that the payload has the shape Airflow's SQS
  trigger gives it (`{"message_batch": [{"Body": ..., "MessageId": ...}]}`) and
  the task reads the body exactly as in Airflow. Without it, Herald's payload
  is the decoded body itself: `event.extra["payload"]`;
- the task returns the bodies it processed, so that a test can check them;
- `dag_id="sqs_event_driven_dag"`: the guide names its SQS and Kafka DAGs
  both `event_driven_dag`, and both examples live in one folder.

Herald makes one run per message, each with the one event that caused it.
"""

import os

from herald import Asset, AssetWatcher, MessageQueueTrigger, dag, task

# Airflow:
# from airflow.providers.common.messaging.triggers.msg_queue import MessageQueueTrigger
# from airflow.sdk import Asset, AssetWatcher, dag, task

# Define the SQS queue URL
SQS_QUEUE = os.environ.get(
    "HERALD_EXAMPLE_SQS_URL",
    "sqs+http://testing:testing@127.0.0.1:5005/123456789012/herald-example?region=us-east-1",
)

# Define a trigger that listens to an external message queue (AWS SQS in this case)
trigger = MessageQueueTrigger(queue=SQS_QUEUE, airflow_compat=True)

# Define an asset that watches for messages on the queue
sqs_queue_asset = Asset("sqs_queue_asset", watchers=[AssetWatcher(name="sqs_watcher", trigger=trigger)])


# Schedule the DAG to run when the asset is triggered
@dag(dag_id="sqs_event_driven_dag", schedule=[sqs_queue_asset])
def event_driven_dag():
    @task
    def process_message(**context):
        # Extract the triggering asset events from the context
        triggering_asset_events = context["triggering_asset_events"]
        bodies = []
        for event in triggering_asset_events[sqs_queue_asset]:
            # Get the message from the TriggerEvent payload
            body = event.extra["payload"]["message_batch"][0]["Body"]
            print(f"Processing message: {body}")
            bodies.append(body)
        return bodies

    process_message()


event_driven_dag()
