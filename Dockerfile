# A frontdesk node: the static binaries on an empty base, so the image needs
# nothing pulled from a registry (the way GoReleaser builds images). Build
# them on the host first:
#
#   CGO_ENABLED=0 go build -o dist/frontdeskd ./cmd/frontdeskd
#   CGO_ENABLED=0 go build -o dist/fdctl ./cmd/fdctl
#   docker build -t frontdesk:local .
#
# Every frontdeskd flag can be set with FRONTDESK_<FLAG> (see README).
FROM scratch
COPY dist/frontdeskd dist/fdctl /
ENV FRONTDESK_DATA_DIR=/data \
    FRONTDESK_API_ADDR=:7420 \
    FRONTDESK_RAFT_ADDR=:7421 \
    FRONTDESK_GOSSIP_ADDR=:7422
VOLUME /data
# API (Connect, gRPC, gRPC-Web, /metrics, /readyz), Raft, gossip (TCP and UDP)
EXPOSE 7420 7421 7422 7422/udp
HEALTHCHECK --interval=5s --timeout=3s --start-period=60s CMD ["/frontdeskd", "healthcheck"]
ENTRYPOINT ["/frontdeskd"]
