"""The web service: `gunicorn --bind 0.0.0.0:9696 predict:app` (gunicorn.conf.py sets the rest).

    POST /predict        {"PULocationID": 130, "DOLocationID": 205, "trip_distance": 3.66}
                      -> {"duration": 18.25, "ride_id": null, "model_version": "ride-duration/1",
                          "run_id": "..."}
    POST /predict/batch  {"rides": [ride, ...]}  (at most WEB_MAX_BATCH_RIDES)
    GET  /health         alive;  GET /ready (or /ping): 200 with the model version once loaded

The model is resolved and loaded when gunicorn imports this module (once, before it forks its
workers): an alias becomes one version, returned in every answer. When the model cannot be
loaded at all, the service exits with one line saying why. With MODEL_REFRESH_SECONDS set, each
worker looks at the alias that often and serves the version it names next, once that version
loads and passes its check.
"""

from __future__ import annotations

import logging
import sys

from flask import Flask

from ride_duration.core.settings import Settings
from ride_duration.model.refresh import ModelRefresher
from ride_duration.model.service import load_for_serving
from ride_duration.online import web


def create_app() -> Flask:
    """The app gunicorn serves, around the model of the settings (kept current when
    MODEL_REFRESH_SECONDS is set)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = Settings.from_env()
    loaded = web.load(lambda: load_for_serving(settings))
    if loaded.model is None:
        print(f"error: {loaded.error}", file=sys.stderr)
        sys.exit(2)
    refresher = ModelRefresher(loaded.model, settings)
    return web.create_app(loaded, max_batch=settings.web_max_batch_rides, refresher=refresher)


def main(argv: list[str] | None = None) -> int:
    """`python predict.py [--port N]`: Flask's development server on 127.0.0.1, for a quick
    try; the service runs under gunicorn (`gunicorn predict:app`)."""
    import argparse

    from ride_duration.core import cli

    parser = argparse.ArgumentParser(
        prog="predict.py",
        description="The web service on Flask's development server at 127.0.0.1, for a quick "
        "try. In earnest, run it under gunicorn: gunicorn --bind 0.0.0.0:9696 predict:app",
    )
    parser.add_argument("--port", type=cli.bounded_int(1, 65535), default=9696)
    args = parser.parse_args(argv)
    create_app().run(host="127.0.0.1", port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
else:  # gunicorn takes the app from this module (`predict:app`), so it is made at import
    app = create_app()
