"""The course's batch scorer (mlops-zoomcamp 04-deployment, batch/score.py), for comparison.

As the course writes it: the whole month in pandas, a uuid4 per ride in a Python loop, the
features as dicts, the model loaded with `mlflow.pyfunc.load_model` (the forest's n_jobs=-1 as
trained), one predict, `to_parquet`. Only the locations differ: MODEL_URI for the model (the
course's S3 layout no longer exists in MLflow 3), INPUT_URI_TEMPLATE for the trips, and the
month scored is the one given (the course's script scores the month before it).
"""

import os
import sys
import uuid

import mlflow
import pandas as pd


def generate_uuids(n):
    ride_ids = []
    for i in range(n):
        ride_ids.append(str(uuid.uuid4()))
    return ride_ids


def read_dataframe(filename: str):
    df = pd.read_parquet(filename)

    df["duration"] = df.lpep_dropoff_datetime - df.lpep_pickup_datetime
    df.duration = df.duration.dt.total_seconds() / 60
    df = df[(df.duration >= 1) & (df.duration <= 60)]

    df["ride_id"] = generate_uuids(len(df))

    return df


def prepare_dictionaries(df: pd.DataFrame):
    categorical = ["PULocationID", "DOLocationID"]
    df[categorical] = df[categorical].astype(str)

    df["PU_DO"] = df["PULocationID"] + "_" + df["DOLocationID"]

    categorical = ["PU_DO"]
    numerical = ["trip_distance"]
    dicts = df[categorical + numerical].to_dict(orient="records")
    return dicts


def load_model(run_id):
    logged_model = os.environ["MODEL_URI"]
    model = mlflow.pyfunc.load_model(logged_model)
    return model


def apply_model(input_file, run_id, output_file):
    print(f"reading the data from {input_file}...")
    df = read_dataframe(input_file)
    dicts = prepare_dictionaries(df)

    print(f"loading the model with RUN_ID={run_id}...")
    model = load_model(run_id)

    print("applying the model...")
    y_pred = model.predict(dicts)

    print(f"saving the result to {output_file}...")

    df_result = pd.DataFrame()
    df_result["ride_id"] = df["ride_id"]
    df_result["lpep_pickup_datetime"] = df["lpep_pickup_datetime"]
    df_result["PULocationID"] = df["PULocationID"]
    df_result["DOLocationID"] = df["DOLocationID"]
    df_result["actual_duration"] = df["duration"]
    df_result["predicted_duration"] = y_pred
    df_result["diff"] = df_result["actual_duration"] - df_result["predicted_duration"]
    df_result["model_version"] = run_id

    df_result.to_parquet(output_file, index=False)


def run():
    taxi_type = sys.argv[1]  # 'green'
    year = int(sys.argv[2])  # 2021
    month = int(sys.argv[3])  # 3

    input_file = os.environ["INPUT_URI_TEMPLATE"].format(
        taxi_type=taxi_type, year=year, month=month
    )
    output_file = f"output/{taxi_type}/{year:04d}-{month:02d}.parquet"
    os.makedirs(os.path.dirname(output_file), exist_ok=True)

    RUN_ID = os.getenv("RUN_ID")

    apply_model(input_file=input_file, run_id=RUN_ID, output_file=output_file)


if __name__ == "__main__":
    run()
