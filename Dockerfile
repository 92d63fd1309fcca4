# The ride-duration scorer: two images from this one file and one lock.
#
# The full image (the default target) runs every role; there is no ENTRYPOINT, each way sends
# its own command:
#   a month:           docker run IMAGE python score.py green 2021 3
#   a docker pool:     the Prefect worker's own command
#   the web service:   docker run -p 9696:9696 IMAGE gunicorn predict:app
#   AWS Lambda:        image command python -m awslambdaric lambda_function.lambda_handler
#   a stream consumer: docker run IMAGE python stream.py
# Only the runtime ([packages]) section of Pipfile.lock is installed.
#
# The serving image (`docker build --target serving`, `make image-serving`) runs the last three
# with a compiled model, from pyproject.toml's serving requirements alone, at the lock's
# versions: numpy, flask, gunicorn, boto3, awslambdaric and prometheus-client, no pandas, pyarrow,
# scikit-learn, MLflow or Prefect. Its install step is scripts/install_serving.py, the one `make
# serving-env` runs outside Docker.
#
# tests/integration/test_image.py replays the full image's install step and COPYs without
# Docker; tests/integration/test_serving.py runs the online modes from `make serving-env`.
FROM python:3.11-slim AS base

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PREFECT_SERVER_ANALYTICS_ENABLED=false

# An unprivileged user (app, uid 10001) that owns /app, where the default output/ and
# mlflow.db go; the code itself stays owned by root.
RUN useradd --create-home --no-log-init --uid 10001 --user-group app \
    && install -d -o app -g app /app
WORKDIR /app


FROM base AS serving

# The index the Pipfile's source (${PIP_INDEX_URL}) stands for; pip's default when empty.
ARG PIP_INDEX_URL

# The package and what its serving role needs, at the lock's versions and by its hashes.
COPY Pipfile.lock pyproject.toml /tmp/serving/
COPY scripts/install_serving.py /tmp/serving/scripts/
COPY ride_duration/ /tmp/serving/ride_duration/
RUN PIP_INDEX_URL="${PIP_INDEX_URL:-$(python -c 'from pip._internal.models.index import PyPI; print(PyPI.simple_url)')}" \
    python /tmp/serving/scripts/install_serving.py --system \
    && rm -rf /tmp/serving /root/.cache

ARG CODE_VERSION
ENV CODE_VERSION=${CODE_VERSION}

COPY predict.py gunicorn.conf.py lambda_function.py stream.py ./
# Byte-compiled now, so that no cold start compiles the code (PYTHONDONTWRITEBYTECODE keeps a
# running container from writing into /app).
RUN python -m compileall -q -j 0 /app

USER 10001:10001
EXPOSE 9696

CMD ["gunicorn", "predict:app"]


FROM base AS full

ARG PIP_INDEX_URL
ARG PIPENV_VERSION=2026.10.3

# pipenv must run in the interpreter it installs into: with --system it installs into the first
# python3 on PATH but decides what is "already installed" from its own interpreter, so a pipenv
# kept in a separate virtual environment silently skips the locked packages it shares with
# pipenv (certifi, packaging). pipenv and its few dependencies therefore stay in the image.
COPY Pipfile Pipfile.lock /tmp/pipenv/
RUN PIP_INDEX_URL="${PIP_INDEX_URL:-$(python -c 'from pip._internal.models.index import PyPI; print(PyPI.simple_url)')}" \
    && export PIP_INDEX_URL \
    && pip install --no-cache-dir --quiet "pipenv==${PIPENV_VERSION}" \
    && PIPENV_PIPFILE=/tmp/pipenv/Pipfile PIP_NO_CACHE_DIR=1 pipenv install --system --deploy \
    && rm -rf /tmp/pipenv /root/.cache

# The commit the image is built from (`make image` passes it), recorded in every manifest. Set
# here, after the install, so that a new commit does not rebuild the layers above.
ARG CODE_VERSION
ENV CODE_VERSION=${CODE_VERSION}

COPY score.py backfill.py train.py predict.py gunicorn.conf.py lambda_function.py stream.py \
     deployment.yaml pyproject.toml ./
COPY ride_duration/ ./ride_duration/
# The package in place (the deployments' entrypoints are paths under /app), with its console
# scripts; its dependencies are the lock's, installed above.
RUN PIP_INDEX_URL="${PIP_INDEX_URL:-$(python -c 'from pip._internal.models.index import PyPI; print(PyPI.simple_url)')}" \
    pip install --no-cache-dir --quiet --no-deps --editable /app \
    && rm -rf /root/.cache \
    && python -m compileall -q -j 0 /app

USER 10001:10001
EXPOSE 9696

CMD ["python", "score.py", "--help"]
