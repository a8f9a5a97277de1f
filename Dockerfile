# The training image the Kubernetes manifests run (k8s/). Not built by the test suite (no registry
# or daemon here), so it stays deliberately plain.
#   CPU:  docker build -t dinoflow:latest --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu .
#   CUDA: docker build -t dinoflow:cuda .   (the default PyPI torch wheels bring the CUDA runtime;
#         the node's NVIDIA driver and device plugin provide the rest)
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE}
ARG TORCH_INDEX=""
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    DO_NOT_TRACK=true KEDRO_DISABLE_TELEMETRY=1 DVC_NO_ANALYTICS=1
WORKDIR /app
COPY pyproject.toml requirements.lock README.md ./
COPY src ./src
COPY conf ./conf
COPY k8s ./k8s
RUN if [ -n "$TORCH_INDEX" ]; then pip install --index-url "$TORCH_INDEX" torch==2.14.1 torchvision==0.29.1; fi \
 && pip install --constraint requirements.lock .
# The manifests run as UID 10001 with a read-only root filesystem; /tmp, /data and /checkpoints
# (training) or /app/data (the scheduled pipeline, which renders training Jobs from k8s/base) are volumes.
USER 10001:10001
CMD ["python", "-m", "dinoflow.train", "--help"]
