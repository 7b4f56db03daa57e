"""ML inference: one run per request message, a small model trained at start on the CPU.

The model (a naive Bayes sentiment classifier) is trained from `_models/reviews.tsv`,
which ships with the repository: nothing is downloaded.

Try it:  herald publish local://inference-requests '{"request_id": "r1", "text": "great product, works well"}'
"""

from __future__ import annotations

from _models.sentiment import load_model

from herald import Asset, AssetWatcher, MessageQueueTrigger, dag, publish, task

requests = Asset(
    "inference_requests", watchers=[AssetWatcher("requests_queue", MessageQueueTrigger("local://inference-requests"))]
)

# Trained once per worker process when the DAG file is imported, then reused by every run.
MODEL = load_model()


@dag(schedule=[requests], tags=["ml"])
def sentiment_inference():
    """Classify the request's text and publish the prediction to local://inference-results."""

    @task
    def predict(triggering_asset_events):
        request = triggering_asset_events[requests][0].extra["payload"]
        label, confidence = MODEL.predict(request["text"])
        print(f"{request['request_id']}: {label} ({confidence:.2f})")
        return {"request_id": request["request_id"], "label": label, "confidence": round(confidence, 4)}

    @task
    def respond(prediction):
        publish("local://inference-results", prediction)
        return prediction["label"]

    respond(predict())


sentiment_inference()
