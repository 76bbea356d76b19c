# rgate itself: one static binary and the demo config, nothing else.
# Build context: a directory holding the static `rgate` binary and `config.yml` (see `make image`).
# Run it with host networking and the Docker socket mounted (docker-compose.yml, profile gateway).
FROM scratch
COPY rgate /rgate
COPY config.yml /etc/rgate/config.yml
# WORKDIR creates the directory: the statistics database and the pid file live here.
WORKDIR /var/lib/rgate
EXPOSE 8080
STOPSIGNAL SIGTERM
ENTRYPOINT ["/rgate"]
CMD ["--port", "8080", "--config", "/etc/rgate/config.yml"]
