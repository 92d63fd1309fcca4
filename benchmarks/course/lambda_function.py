"""The course's stream scorer (mlops-zoomcamp 04-deployment, streaming/lambda_function.py).

As the course writes it: the model is loaded with `mlflow.pyfunc.load_model` at import, as it
was trained (the forest's n_jobs=-1), and each record is predicted and written on its own with
`put_record`; the version is hard-coded. Only the model's location differs: MODEL_LOCATION.
"""

import base64
import json
import os

import boto3
import mlflow

kinesis_client = boto3.client("kinesis")

PREDICTIONS_STREAM_NAME = os.getenv("PREDICTIONS_STREAM_NAME", "ride_predictions")


logged_model = os.environ["MODEL_LOCATION"]
model = mlflow.pyfunc.load_model(logged_model)


TEST_RUN = os.getenv("TEST_RUN", "False") == "True"


def prepare_features(ride):
    features = {}
    features["PU_DO"] = "%s_%s" % (ride["PULocationID"], ride["DOLocationID"])
    features["trip_distance"] = ride["trip_distance"]
    return features


def predict(features):
    pred = model.predict(features)
    return float(pred[0])


def lambda_handler(event, context):
    # print(json.dumps(event))

    predictions_events = []

    for record in event["Records"]:
        encoded_data = record["kinesis"]["data"]
        decoded_data = base64.b64decode(encoded_data).decode("utf-8")
        ride_event = json.loads(decoded_data)

        # print(ride_event)
        ride = ride_event["ride"]
        ride_id = ride_event["ride_id"]

        features = prepare_features(ride)
        prediction = predict(features)

        prediction_event = {
            "model": "ride_duration_prediction_model",
            "version": "123",
            "prediction": {"ride_duration": prediction, "ride_id": ride_id},
        }

        if not TEST_RUN:
            kinesis_client.put_record(
                StreamName=PREDICTIONS_STREAM_NAME,
                Data=json.dumps(prediction_event),
                PartitionKey=str(ride_id),
            )

        predictions_events.append(prediction_event)

    return {"predictions": predictions_events}
