# The image of infra/docker-compose.yml's prefect-worker: uv and Python 3.12 (the ats environment is
# synced into a volume when the container starts), plus the docker CLI and its compose plugin so
# that the go-live swap (ATS_GATEWAY_CONTROLLER=docker) runs `docker compose … stop / up -d --wait`
# against the host's Docker engine through the mounted /var/run/docker.sock.  Both binaries are
# static Go programs, copied from Docker's official CLI image.
ARG UV_IMAGE=ghcr.io/astral-sh/uv:python3.12-bookworm-slim
ARG DOCKER_CLI_IMAGE=docker:28-cli

FROM ${DOCKER_CLI_IMAGE} AS docker-cli

FROM ${UV_IMAGE}
COPY --from=docker-cli /usr/local/bin/docker /usr/local/bin/docker
COPY --from=docker-cli /usr/local/libexec/docker/cli-plugins/docker-compose /usr/local/libexec/docker/cli-plugins/docker-compose
RUN docker --version && docker compose version
