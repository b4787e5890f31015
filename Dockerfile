# flowlb agent and controller image. Build: docker build -t flowlb .
FROM debian:12 AS build
COPY scripts/install-deps.sh /src/scripts/install-deps.sh
RUN /src/scripts/install-deps.sh
COPY . /src
RUN cmake -S /src -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLOWLB_TESTS=OFF -DFLOWLB_BENCH=OFF \
 && ninja -C /build flowlb-agent flowlb-controller flowlb_xdp_steer

FROM debian:12-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libxdp1 libbpf1 libgrpc++1.51 libprotobuf32 \
      libyaml-cpp0.7 libspdlog1.10 libnl-route-3-200 libcpprest2.10 libprometheus-cpp-core1.0 \
      libprometheus-cpp-pull1.0 iproute2 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /build/agent/flowlb-agent /build/controller/flowlb-controller /usr/local/bin/
COPY --from=build /build/agent/flowlb_xdp_steer.o /usr/lib/flowlb/flowlb_xdp_steer.o
USER 0
ENTRYPOINT ["/usr/local/bin/flowlb-agent"]
