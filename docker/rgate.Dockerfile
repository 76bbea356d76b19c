# rgate itself: one static binary and the demo config, nothing else.
# Build context: a directory holding the static `rgate` binary and `config.yml` (see `make image`).
# Run it with host networking and the Docker socket mounted (docker-compose.yml, profile gateway).
FROM scratch
COPY rgate /rgate
COPY config.yml /etc/rgate/config.yml
# WORKDIR creates the directory: the statistics database and the pid file live here.
WORKDIR /var/lib/rgate
EXPOSE 8080
# rgate is the container's PID 1 and runs as a supervisor (it would as PID 1 anyway; the flag
# keeps it so under `docker run --init`): it holds the listening socket for the container's
# life, so `docker kill -s HUP` restarts the serving process without ending the container,
# and `docker stop` (SIGTERM) drains it and exits 0. See README, "Graceful restart".
STOPSIGNAL SIGTERM
ENTRYPOINT ["/rgate", "--supervise"]
CMD ["--port", "8080", "--config", "/etc/rgate/config.yml"]
