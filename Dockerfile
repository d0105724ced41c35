# The binfmt image: a drop-in for tonistiigi/binfmt, for linux/amd64, linux/arm64,
# linux/ppc64le, linux/s390x and linux/riscv64.
#
# It only packages what `cargo xtask dist` built (static binaries that carry their
# emulators), so it has no RUN step and building any platform needs no emulation.
# docs/building.md ("The container image") has the build commands; the Docker test runs
# exactly those, with BuildKit (buildx) and with the classic builder.
#
# Written for both builders, down to BuildKit v0.8 (Docker 20.10):
# - BuildKit sets TARGETARCH from --platform; the classic builder sets nothing, so
#   it needs --build-arg TARGETARCH=<arch>.
# - TARGETARCH is declared inside the last stage, after a COPY: the classic builder
#   records an ARG step that comes first in a stage as an image of the daemon's own
#   platform, and then refuses to build on it for another one. It is not declared
#   before the first FROM: BuildKit v0.8 then empties it.

# Every binary and its SBOM under its platform's name. Adding a platform is two lines
# here.
FROM scratch AS binaries
COPY dist/binfmt-x86_64-linux-musl /linux-amd64/binfmt
COPY dist/binfmt-x86_64-linux-musl.spdx.json /linux-amd64/sbom.spdx.json
COPY dist/binfmt-aarch64-linux-musl /linux-arm64/binfmt
COPY dist/binfmt-aarch64-linux-musl.spdx.json /linux-arm64/sbom.spdx.json
COPY dist/binfmt-powerpc64le-linux-gnu /linux-ppc64le/binfmt
COPY dist/binfmt-powerpc64le-linux-gnu.spdx.json /linux-ppc64le/sbom.spdx.json
COPY dist/binfmt-s390x-linux-gnu /linux-s390x/binfmt
COPY dist/binfmt-s390x-linux-gnu.spdx.json /linux-s390x/sbom.spdx.json
COPY dist/binfmt-riscv64-linux-gnu /linux-riscv64/binfmt
COPY dist/binfmt-riscv64-linux-gnu.spdx.json /linux-riscv64/sbom.spdx.json

FROM scratch
# QEMU is GPL-2.0: its license and where its source is go with its binaries.
COPY qemu-blobs/COPYING qemu-blobs/README.md /usr/share/doc/binfmt/qemu/
ARG TARGETARCH
COPY --from=binaries /linux-${TARGETARCH}/binfmt /usr/bin/binfmt
# The SPDX SBOM `cargo xtask dist` wrote beside the binary: what is in it (crates,
# QEMU's Debian packages, each emulator, with their sha256).
COPY --from=binaries /linux-${TARGETARCH}/sbom.spdx.json /usr/share/doc/binfmt/sbom.spdx.json
# binfmt(1), a page per subcommand and the shell completions, which `cargo xtask dist`
# generates from the flag definitions (the same for every platform).
COPY dist/man/ /usr/share/man/man1/
COPY dist/completions/binfmt.bash /usr/share/bash-completion/completions/binfmt
COPY dist/completions/_binfmt /usr/share/zsh/vendor-completions/_binfmt
COPY dist/completions/binfmt.fish /usr/share/fish/vendor_completions.d/binfmt.fish
# OCI labels: where the source is, which commit and version (the documented build
# commands pass them), and the licenses of what the image holds: binfmt's own and
# QEMU's, whose emulators are in the binary (each crate's is in the SBOM).
ARG SOURCE
ARG REVISION
ARG VERSION
LABEL org.opencontainers.image.title="binfmt" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="(MIT OR Apache-2.0) AND GPL-2.0-only"
# Emulators are written here (disk, not RAM) and registered with flag F, so the
# kernel keeps them open after the container is gone. A volume puts them on the
# host's disk: on a container filesystem served by a daemon (fuse-overlayfs) the open
# file would stop working once the container is removed.
VOLUME /var/lib/binfmt
ENTRYPOINT ["/usr/bin/binfmt"]
