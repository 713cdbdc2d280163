FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY loadtest ./loadtest
# The cloud provider kinds' credential libraries (the example config uses all three); EXTRAS="" leaves them out.
ARG EXTRAS=azure,bedrock,vertex
RUN pip install ".${EXTRAS:+[$EXTRAS]}" && useradd --system --uid 10001 --home-dir /app gateway \
    && mkdir -p /etc/gateway /var/lib/gateway && chown gateway /var/lib/gateway
COPY config/gateway.example.yaml /etc/gateway/gateway.yaml

USER gateway
WORKDIR /var/lib/gateway
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"
CMD ["gateway", "serve", "--config", "/etc/gateway/gateway.yaml", "--host", "0.0.0.0"]
