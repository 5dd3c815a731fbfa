# CPU image of fer_lightning: `docker build -t fer-lightning .`
#   docker run --rm fer-lightning                          # trains on the synthetic default
#   docker run --rm fer-lightning +experiment=smoke
# For GPUs, start from a CUDA runtime image and install torch's CUDA wheels instead.
FROM python:3.11-slim

WORKDIR /app
RUN pip install --no-cache-dir torch==2.14.1 torchvision==0.29.1
COPY pyproject.toml README.md ./
COPY fer_lightning ./fer_lightning
RUN pip install --no-cache-dir .

WORKDIR /runs
ENTRYPOINT ["python", "-m", "fer_lightning"]
