# The tracker (and simulator) image for compose.yaml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY tracker ./tracker
COPY simulator ./simulator
COPY bench ./bench
COPY web ./web
RUN pip install --no-cache-dir .
EXPOSE 8000
CMD ["tracker", "serve"]
