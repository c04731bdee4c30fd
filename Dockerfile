# vIOP application image. Secrets and keys come from the environment / mounted files, never the image.
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /srv/viop viop
WORKDIR /srv/viop
COPY pyproject.toml README.md ./
COPY vIOP ./vIOP
RUN pip install .
USER viop
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD curl -fsS http://127.0.0.1:8000/healthz || exit 1
CMD ["python", "-m", "vIOP", "serve", "--host", "0.0.0.0", "--port", "8000"]
