"""IoT: evaluate every sensor reading; publish an alert to another queue when a threshold is crossed.

Try it:  herald publish local://sensor-readings '{"sensor": "boiler-1", "temperature": 97.5}'
"""

from __future__ import annotations

from herald import Asset, AssetWatcher, MessageQueueTrigger, dag, publish, task

THRESHOLD_C = 80.0

sensor_readings = Asset(
    "sensor_readings",
    watchers=[
        AssetWatcher("readings_queue", MessageQueueTrigger("local://sensor-readings", filter="temperature != null"))
    ],
)
alerts = Asset("alerts", watchers=[AssetWatcher("alerts_queue", MessageQueueTrigger("local://alerts"))])


@dag(schedule=[sensor_readings], tags=["iot"])
def evaluate_sensor_reading():
    """One run per reading: compare it with the threshold and raise an alert if needed."""

    @task
    def evaluate(triggering_asset_events):
        reading = triggering_asset_events[sensor_readings][0].extra["payload"]
        too_hot = reading["temperature"] > THRESHOLD_C
        print(f"{reading['sensor']}: {reading['temperature']} C ({'ALERT' if too_hot else 'ok'})")
        return {**reading, "alert": too_hot}

    @task
    def raise_alert(result):
        if result["alert"]:
            publish(
                "local://alerts",
                {"sensor": result["sensor"], "temperature": result["temperature"], "threshold": THRESHOLD_C},
            )
        return result["alert"]

    raise_alert(evaluate())


@dag(schedule=[alerts], tags=["iot"])
def notify_on_call():
    """One run per alert: here it only prints; a real one would page someone."""

    @task
    def page(triggering_asset_events):
        alert = triggering_asset_events[alerts][0].extra["payload"]
        print(f"PAGING on-call: {alert['sensor']} at {alert['temperature']} C (> {alert['threshold']} C)")
        return alert["sensor"]

    page()


evaluate_sensor_reading()
notify_on_call()
