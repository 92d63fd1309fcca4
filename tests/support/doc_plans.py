"""How the documentation's command blocks are run: one plan per section, in the order a reader
goes through the pages (each section builds on what the ones before it left: a model, outputs).

A plan names the commands of its section that cannot run here (and why) and what the output
of others must say. `tests/test_docs.py` checks that every section with commands on every page
has a plan, and every plan a section.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Plan:
    """How the test runs one section: commands it cannot run here, and what output must say."""

    skip: dict[str, str] = field(default_factory=dict)  # command -> why it is not run here
    expect: dict[str, tuple[str, ...]] = field(default_factory=dict)  # command -> texts
    # command -> the words that introduce the block showing all it prints (tests/support/shown)
    prints: dict[str, str] = field(default_factory=dict)


NO_DOCKER = (
    "needs a Docker engine, which neither this machine nor CI has (test_image.py replays the "
    "image's install step instead)"
)
THE_SUITE = "it is the suite this test is part of"

PREDICT = (
    "curl -s -X POST -H 'Content-Type: application/json' -d '{\"PULocationID\": 130, "
    '"DOLocationID": 205, "trip_distance": 3.66}\' http://127.0.0.1:9696/predict'
)
LAMBDA_LOCALLY = (
    'echo \'{"ride": {"PULocationID": 130, "DOLocationID": 205, "trip_distance": 3.66}, '
    '"ride_id": 156}\' | TEST_RUN=True pipenv run python lambda_function.py'
)
READ_PREDICTIONS = (
    "pipenv run python -c \"import boto3; k = boto3.client('kinesis'); shard = "
    "k.list_shards(StreamName='ride_predictions')['Shards'][0]['ShardId']; it = "
    "k.get_shard_iterator(StreamName='ride_predictions', ShardId=shard, "
    "ShardIteratorType='TRIM_HORIZON')['ShardIterator']; "
    "print(k.get_records(ShardIterator=it)['Records'][0]['Data'].decode())\""
)

MONITORING_TABLE = (
    'pipenv run python -c "import duckdb; duckdb.sql(\\"SELECT month, state, model_version, '
    "round(rmse, 2) AS rmse, round(trip_distance_psi, 4) AS distance_psi, "
    "round(PULocationID_psi, 4) AS pickup_psi FROM 'output/_monitoring/green-*.parquet' "
    'ORDER BY month\\").show()"'
)

# Every section with a console block, keyed "PAGE#TITLE", in the order they run.
PLANS: dict[str, Plan] = {
    "README.md#Quickstart": Plan(
        skip={"make test": THE_SUITE},
        prints={"make demo": "`make demo` prints"},
        expect={
            "make demo": (
                "rmse: ",
                "compiled forest: bit for bit equal to scikit-learn",
                "scored ",
                "predicted with compiled forest",
                "Prefect API: http://127.0.0.1:4200/api",
                "output/taxi_type=green/year=2021/month=03/",
            )
        },
    ),
    "README.md#One command per mode": Plan(
        expect={
            "pipenv run python score.py green 2021 4": ("score-green-2021-04", "scored "),
            # make demo scored 2021-03 and the line above 2021-04 with this model
            "pipenv run python backfill.py green 2021-01 2021-05": (
                "green 2021-01: completed",
                "3 months scored, 2 skipped, 0 failed",
            ),
            PREDICT: ('{"duration":', '"model_version":"ride-duration/1"'),
            LAMBDA_LOCALLY: ('"ride_id": 156', '"batchItemFailures": []'),
        }
    ),
    "docs/batch.md#Scoring a month": Plan(
        expect={
            "pipenv run python score.py green 2021 3": ("score-green-2021-03", "scored "),
            "pipenv run python score.py green 2021 4 --model-uri models:/ride-duration/1": (
                "resolved to ride-duration/1",
            ),
            "pipenv run python score.py green 2021 3 --output-root output/_experiments": (
                "output/_experiments/taxi_type=green/year=2021/month=03/predictions.parquet",
            ),
        }
    ),
    "docs/batch.md#Reading the predictions": Plan(
        expect={
            "pipenv run python -c \"import pandas as pd; df = pd.read_parquet('output'); "
            "print(df.groupby(['year', 'month', 'model_version'], observed=True).size())\"": (
                "ride-duration/1",
            ),
            'pipenv run python -c "import pyarrow.dataset as ds; '
            "print(ds.dataset('output', partitioning='hive').count_rows())\"": (),
            'pipenv run python -c "import duckdb; duckdb.sql(\\"SELECT month, model_version, '
            "count(*) AS rides FROM read_parquet('output/*/*/*/*.parquet', hive_partitioning = "
            'true) GROUP BY ALL ORDER BY month\\").show()"': ("ride-duration/1", "rides"),
            "pipenv run python -c \"import pandas as pd; df = pd.read_parquet('output/_versions'); "
            "print(df.groupby(['month', 'model_version'], observed=True).size())\"": (
                "ride-duration/1",
            ),
            "pipenv run python -m ride_duration.migrate output": (
                "nothing to migrate under output",
            ),
        }
    ),
    "docs/backfill.md#Backfilling past months": Plan(
        expect={
            "pipenv run python backfill.py green 2021-01 2021-05": (
                "0 months scored, 5 skipped, 0 failed",
            ),
            "pipenv run python backfill.py green,yellow 2021-01 2021-12 --dry-run": (
                "green 2021-05: done",
                "yellow 2021-01: not published",
                "taxi type  month    state",
            ),
            "pipenv run python backfill.py green 2021-01 2021-05 --mode failed": (
                "0 months scored, 5 skipped, 0 failed",
            ),
        }
    ),
    "docs/backfill.md#The state of every month": Plan(
        expect={
            "pipenv run python backfill.py green,fhv 2021-01 2021-06 --status": (
                "published (UTC)",
                "green      2021-05  done           ride-duration/1",
                "green      2021-06  not published",
                "fhv        2021-01  unscorable",
            ),
        }
    ),
    "docs/backfill.md#Stale months": Plan(
        expect={
            "pipenv run python backfill.py green 2021-01 2021-05 --mode stale --dry-run": (
                "green      2021-01  done",
            ),
        }
    ),
    # Every month 2021-01..05 is scored by now, by make demo's model (version 1, profiled).
    "docs/monitoring.md#The monitoring table": Plan(
        expect={MONITORING_TABLE: ("2021-01", "2021-05", "published", "ride-duration/1")}
    ),
    "docs/monitoring.md#The report": Plan(
        expect={
            "pipenv run ride-duration-report green 2021-01 2021-05": (
                "report-green-2021-01-2021-05.html",
            )
        }
    ),
    "docs/monitoring.md#Models without a profile": Plan(
        expect={
            "pipenv run ride-duration-profile models:/ride-duration/1": (
                "profiled ride-duration/1 on ",
                "trips of green 2021-01; logged as profile.npz",
            )
        }
    ),
    "docs/training.md#Training": Plan(
        expect={
            "pipenv run python train.py green 2021 1": ("rmse: ", "compiled forest: bit for bit"),
            "pipenv run python train.py green 2021 1 --estimator linear": (
                "compiled linear model: bit for bit equal to scikit-learn",
            ),
        },
    ),
    "docs/training.md#The compiled forest": Plan(
        expect={
            "pipenv run python -m ride_duration.compile models:/ride-duration/1": (
                "compiled ride-duration/1: bit for bit equal to scikit-learn",
            ),
        },
    ),
    "docs/deployments.md#Deploying with Prefect": Plan(
        expect={
            "make server": ("http://127.0.0.1:4200/api",),
            "pipenv run prefect deploy --all --prefect-file deployment.yaml --no-prompt": (
                "ride-duration-prediction/monthly",
                "ride-duration-prediction-scheduled/green",
                "ride-duration-prediction-backfill/backfill",
            ),
            "pipenv run prefect deployment run ride-duration-prediction/monthly --param "
            "taxi_type=green --param year=2021 --param month=4 --watch": ("Completed",),
            "pipenv run python backfill.py green 2021-01 2021-03 --mode all --deployment "
            "ride-duration-prediction/monthly": ("3 months scored, 0 skipped, 0 failed",),
        }
    ),
    "docs/deployments.md#The Docker image": Plan(
        skip={
            "make image": NO_DOCKER,
            "docker run --rm -e MLFLOW_TRACKING_URI=http://mlflow:5000 -e "
            "OUTPUT_ROOT=s3://predictions/rides ride-duration:latest python score.py green "
            "2021 3": NO_DOCKER,
        }
    ),
    "docs/deployments.md#Scaling out": Plan(
        expect={
            "pipenv run prefect deploy --all --prefect-file deployment-docker.yaml --no-prompt": (
                "ride-duration-prediction/monthly-docker",
                "ride-duration-prediction-backfill/backfill-docker",
            ),
        }
    ),
    "docs/web.md#Serving online": Plan(
        expect={
            # the Training section moved the alias to the linear baseline, version 3
            PREDICT: ('{"duration":', '"model_version":"ride-duration/3"'),
            "curl -s -X POST -H 'Content-Type: application/json' -d '{\"rides\": "
            '[{"PULocationID": 130, "DOLocationID": 205, "trip_distance": 3.66, "ride_id": '
            '"a"}, {"PULocationID": null, "DOLocationID": 43, "trip_distance": 1.2, '
            '"ride_id": "b"}]}\' http://127.0.0.1:9696/predict/batch': (
                '"ride_id":"a"',
                '"ride_id":"b"',
            ),
            "curl -s http://127.0.0.1:9696/ready": ('"status":"ready"',),
        }
    ),
    "docs/web.md#The serving install": Plan(
        expect={
            # make demo's forest, compiled (version 3, the linear baseline, is compiled too)
            PREDICT: ('{"duration":', '"model_version":"ride-duration/1"'),
            # the wheelhouse installs offline, console scripts and all
            "~/serving/bin/ride-duration-stream --help": ("usage: ride-duration-stream",),
        }
    ),
    "docs/web.md#Operating the service": Plan(
        expect={
            "curl -s -i -X POST -H 'Content-Type: application/json' -H 'X-Request-ID: order-77' "
            '-d \'{"PULocationID": 130, "DOLocationID": 205, "trip_distance": 3.66}\' '
            "http://127.0.0.1:9696/predict": (
                "HTTP/1.1 200 OK",
                "X-Request-ID: order-77",
                # the Training section moved the alias to the linear baseline, version 3
                "X-Model-Version: ride-duration/3",
                '"model_version":"ride-duration/3"',
            ),
            "curl -s http://127.0.0.1:9696/metrics | grep -E "
            "'^ride_duration_web_(requests_total|rides_refused_total|model_info)'": (
                'ride_duration_web_requests_total{endpoint="/predict",status="200"} 1.0',
                'ride_duration_web_rides_refused_total{rule="trip_distance"} 0.0',
                'ride_duration_web_model_info{model_version="ride-duration/3",run_id="',
            ),
            # the second service, refreshing every 5 s, switched to the version train.py made
            "pipenv run python train.py green 2021 1 --estimator linear": (
                "models:/ride-duration/4",
            ),
            "sleep 10; curl -s -i http://127.0.0.1:9697/ready": (
                "HTTP/1.1 200 OK",
                "X-Model-Version: ride-duration/4",
                '"model_version":"ride-duration/4"',
            ),
            "curl -s http://127.0.0.1:9697/metrics | grep -E "
            "'^ride_duration_web_model_(info|refreshes_total)'": (
                'ride_duration_web_model_info{model_version="ride-duration/3",run_id="',
                'ride_duration_web_model_info{model_version="ride-duration/4",run_id="',
                'ride_duration_web_model_refreshes_total{outcome="switched"}',
                'ride_duration_web_model_refreshes_total{outcome="refused"} 0.0',
            ),
            # the drain: /ready 503 at once, a prediction still answered, then the exit
            "pkill -TERM -f 'gunicorn --bind 127.0.0.1:969[7]'; sleep 0.5; curl -s -i "
            "http://127.0.0.1:9697/ready": (
                "HTTP/1.1 503 SERVICE UNAVAILABLE",
                '"status":"draining"',
                "X-Model-Version: ride-duration/4",
            ),
            "curl -s -i -X POST -H 'Content-Type: application/json' -d '{\"PULocationID\": "
            '130, "DOLocationID": 205, "trip_distance": 3.66}\' http://127.0.0.1:9697/predict': (
                "HTTP/1.1 200 OK",
                "Connection: close",
                '"model_version":"ride-duration/4"',
            ),
        }
    ),
    "docs/stream.md#Scoring a stream": Plan(
        expect={
            # the consumer started above serves its metrics (the stream was read before it)
            "curl -s http://127.0.0.1:9100/metrics | grep '^ride_duration_stream' | grep -v "
            "_created": (
                "ride_duration_stream_records_read_total",
                "ride_duration_stream_model_info",
            ),
            "pipenv run python stream.py --until-idle": (
                "reading ride_events into ride_predictions",
            ),
            READ_PREDICTIONS: ('"model": "ride_duration_prediction_model"', '"ride_id": 156'),
            # the consumer serving its metrics, refreshing every 5 s, takes version 5
            "pipenv run python train.py green 2021 1 --estimator linear": (
                "models:/ride-duration/5",
            ),
            "sleep 10; curl -s http://127.0.0.1:9100/metrics | grep -E "
            "'^ride_duration_stream_model_(info|refreshes_total)'": (
                'ride_duration_stream_model_info{model_version="ride-duration/5",run_id="',
                'ride_duration_stream_model_refreshes_total{outcome="switched"} 1.0',
                'ride_duration_stream_model_refreshes_total{outcome="refused"} 0.0',
            ),
            LAMBDA_LOCALLY: ('"ride_id": 156', '"batchItemFailures": []'),
        },
    ),
    "docs/stream.md#From the serving install": Plan(
        expect={
            'echo \'{"ride": {"PULocationID": 130, "DOLocationID": 205, "trip_distance": '
            '3.66}, "ride_id": 156}\' | TEST_RUN=True MODEL_URI=models:/ride-duration/1 '
            ".venv-serving/bin/python lambda_function.py": (
                '"version": "ride-duration/1"',
                '"ride_id": 156',
                '"batchItemFailures": []',
            ),
        }
    ),
    "docs/configuration.md#S3 and a remote MLflow server": Plan(
        expect={
            "pipenv run python score.py green 2021 3": (
                "s3://predictions/rides/taxi_type=green/year=2021/month=03/",
            )
        }
    ),
    "CONTRIBUTING.md#Development": Plan(
        skip={
            "make test": THE_SUITE,
            "make bench": "it takes minutes and rewrites benchmarks/RESULTS.md; it is run by "
            "hand and its results are committed",
            "make bench-status": "it rewrites benchmarks/RESULTS.md; it is run by hand and its "
            "results are committed",
            "make bench-serving": "it rewrites benchmarks/RESULTS.md and checks out an older "
            "commit to compare with; it is run by hand and its results are committed",
        },
        expect={
            "make test-unit": (" passed",),
            "make docs": ("wrote the settings table", "pasted "),
        },
    ),
}
