# The binfmt image: a drop-in for tonistiigi/binfmt, for linux/amd64 and linux/arm64.
#
# It only packages what `cargo xtask dist` built (static binaries that carry their
# emulators), so it has no RUN step and building the arm64 image needs no emulation.
#
#   cargo xtask fetch && cargo xtask dist
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/binfmt:TAG --push .
#
# The classic builder (no buildx) sets no TARGETARCH: pass it, one platform at a
# time, and use --no-cache, as that builder's cache does not tell platforms apart:
#
#   docker build --no-cache --platform linux/arm64 --build-arg TARGETARCH=arm64 -t binfmt:arm64 .

# Set by buildx/BuildKit from --platform (amd64, arm64). Declared before the first
# FROM so that it can choose the stage below: a COPY that used it inside a stage
# would need an ARG step there, which the classic builder records as an image of
# the daemon's platform and then refuses to build on for another one.
ARG TARGETARCH

FROM scratch AS linux-amd64
COPY dist/binfmt-x86_64-linux-musl /usr/bin/binfmt

FROM scratch AS linux-arm64
COPY dist/binfmt-aarch64-linux-musl /usr/bin/binfmt

FROM linux-${TARGETARCH}
# QEMU is GPL-2.0: its license and where its source is go with its binaries.
COPY qemu-blobs/COPYING qemu-blobs/README.md /usr/share/doc/binfmt/qemu/
# Emulators are written here (disk, not RAM) and registered with flag F, so the
# kernel keeps them open after the container is gone. A volume puts them on the
# host's disk: on a container filesystem served by a daemon (fuse-overlayfs) the open
# file would stop working once the container is removed.
VOLUME /var/lib/binfmt
ENTRYPOINT ["/usr/bin/binfmt"]
