# The demo backend (payment, orders): one static binary, nothing else.
# Build context: a directory holding the static `demo-backend` binary (see `make demo-image`).
FROM scratch
COPY demo-backend /demo-backend
ENV PORT=8080
EXPOSE 8080
STOPSIGNAL SIGTERM
# Exec form: there is no shell in the image. A container is an rgate instance only once this
# says healthy, which is what makes a rolling restart error-free.
HEALTHCHECK --interval=1s --timeout=2s --retries=2 CMD ["/demo-backend", "--check"]
ENTRYPOINT ["/demo-backend"]
