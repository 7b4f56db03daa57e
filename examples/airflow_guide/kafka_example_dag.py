"""The Kafka example of Airflow's event-driven scheduling guide, ported to Herald.

Only the imports changed, plus the broker address, read from
HERALD_EXAMPLE_KAFKA_URL so that a test can point it at its own cluster.
The apply_function keeps Airflow's signature and skips test orders (returns
None), so a run starts only for the messages worth one.
"""

import json
import os

from herald import Asset, AssetWatcher, MessageQueueTrigger, dag, task

KAFKA_QUEUE = os.environ.get("HERALD_EXAMPLE_KAFKA_URL", "kafka://localhost:9092/my_topic")


# Define a function to process Kafka messages: Airflow passes the message last.
def apply_function(*args, **kwargs):
    message = args[-1]
    val = json.loads(message.value())
    print(f"Value in message is {val}")
    if val.get("status") == "test":
        return None  # not an event: acknowledged and counted as skipped
    return val


# Define a trigger that listens to the Kafka topic
trigger = MessageQueueTrigger(
    queue=KAFKA_QUEUE,
    apply_function="kafka_example_dag.apply_function",
)

# Define an asset that watches for messages on the Kafka topic
kafka_topic_asset = Asset("kafka_topic_asset", watchers=[AssetWatcher(name="kafka_watcher", trigger=trigger)])


@dag(schedule=[kafka_topic_asset])
def event_driven_dag():
    @task
    def process_message(**context):
        # Extract the triggering asset events from the context
        triggering_asset_events = context["triggering_asset_events"]
        for event in triggering_asset_events[kafka_topic_asset]:
            # Get the message from the TriggerEvent payload
            print(f"Processing message: {event.extra['payload']}")
            return event.extra["payload"]

    process_message()


event_driven_dag()
