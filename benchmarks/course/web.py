"""The course's web service (mlops-zoomcamp 04-deployment, web-service-mlflow/predict.py).

As the course writes it: the model is loaded with `mlflow.pyfunc.load_model` as it was trained
(the forest's n_jobs=-1), one feature dict is predicted per request, and nothing is validated.
Only the model's location differs: MODEL_LOCATION, since the course's S3 path is not here.
"""

import os

import mlflow
from flask import Flask, jsonify, request

RUN_ID = os.getenv("RUN_ID", "course")
logged_model = os.environ["MODEL_LOCATION"]
model = mlflow.pyfunc.load_model(logged_model)


def prepare_features(ride):
    features = {}
    features["PU_DO"] = "%s_%s" % (ride["PULocationID"], ride["DOLocationID"])
    features["trip_distance"] = ride["trip_distance"]
    return features


def predict(features):
    preds = model.predict(features)
    return float(preds[0])


app = Flask("duration-prediction")


@app.route("/predict", methods=["POST"])
def predict_endpoint():
    ride = request.get_json()

    features = prepare_features(ride)
    pred = predict(features)

    result = {"duration": pred, "model_version": RUN_ID}

    return jsonify(result)
