# Berth registry image: `docker build -t berth .` then
#   docker run -p 5000:5000 -v berth-data:/data berth
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY registry ./registry
COPY migrations ./migrations
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
COPY --from=build /install /usr/local
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin berth \
    && mkdir -p /data /etc/berth && chown berth /data
COPY config/berth.yaml /etc/berth/berth.yaml
USER berth
WORKDIR /data
# Inside a container the registry must listen on every interface; data lives on the volume.
ENV BERTH_SERVER__HOST=0.0.0.0 \
    BERTH_DATA_DIR=/data \
    PYTHONUNBUFFERED=1
VOLUME ["/data"]
EXPOSE 5000
ENTRYPOINT ["berth", "serve", "--config", "/etc/berth/berth.yaml"]
