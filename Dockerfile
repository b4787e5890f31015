# flowlb: one image with flowlb-controller and flowlb-agent, built from source.
#   docker build -t flowlb --build-arg GIT_COMMIT=$(git rev-parse --short=12 HEAD) .
#   buildah bud --layers -t flowlb ...           (e2e/image_test.sh builds it this way)
# BASE is any Debian 12 image (the official debian:12 by default).
ARG BASE=debian:12

# --- build: compilers and -dev packages, never shipped -------------------------------
FROM ${BASE} AS build
ENV DEBIAN_FRONTEND=noninteractive
# The toolchain layer depends on this one script only: editing sources keeps it cached.
COPY scripts/install-deps.sh /src/scripts/install-deps.sh
RUN /src/scripts/install-deps.sh build && rm -rf /var/lib/apt/lists/*
COPY . /src
ARG GIT_COMMIT=unknown
# ccache in a cache mount: a rebuild after a small change recompiles that change only.
# The runtime packages are exactly those owning the libraries the binaries load.
RUN --mount=type=cache,target=/root/.cache/ccache,id=flowlb-ccache \
    export CCACHE_DIR=/root/.cache/ccache CCACHE_MAXSIZE=2G \
 && cmake -S /src -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLOWLB_TESTS=OFF \
      -DFLOWLB_BENCH=OFF -DFLOWLB_GIT_COMMIT="${GIT_COMMIT}" >/dev/null \
 && ninja -C /build flowlb-agent flowlb-controller flowlb_xdp_steer \
 && mkdir /out \
 && cp /build/agent/flowlb-agent /build/controller/flowlb-controller /build/agent/flowlb_xdp_steer.o /out/ \
 && strip /out/flowlb-agent /out/flowlb-controller \
 && for lib in $(ldd /out/flowlb-agent /out/flowlb-controller | awk '/=> \// {print $3}' | sort -u); do \
      dpkg -S "$lib" 2>/dev/null || dpkg -S "${lib#/usr}" 2>/dev/null || dpkg -S "/usr$lib"; \
    done | cut -d: -f1 | sort -u >/out/runtime-packages \
 && cat /out/runtime-packages

# --- runtime: the binaries, their shared libraries, nothing else ----------------------
FROM ${BASE}
ARG GIT_COMMIT=unknown
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="flowlb" \
      org.opencontainers.image.description="Kubernetes LoadBalancer for bare metal: VIPs from IP pools, an AF_XDP Maglev datapath, L2 announcement (flowlb-controller and flowlb-agent)" \
      org.opencontainers.image.source="https://github.com/flowlb/flowlb" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      io.flowlb.agent.capabilities="BPF,PERFMON,NET_ADMIN,NET_RAW,IPC_LOCK"
COPY --from=build /out/runtime-packages /tmp/runtime-packages
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive xargs apt-get install -y -q --no-install-recommends </tmp/runtime-packages \
 && apt-get clean && rm -rf /var/lib/apt/lists/* /var/log/apt /var/log/dpkg.log /tmp/runtime-packages \
      /usr/share/doc /usr/share/man /usr/share/info
COPY --from=build /out/flowlb-agent /out/flowlb-controller /usr/local/bin/
COPY --from=build /out/flowlb_xdp_steer.o /usr/lib/flowlb/flowlb_xdp_steer.o
# The controller runs as this user; the agent's Pod runs as root with exactly
# the capabilities in io.flowlb.agent.capabilities (charts/flowlb agent.yaml).
USER 65532:65532
CMD ["/usr/local/bin/flowlb-controller", "--help"]
