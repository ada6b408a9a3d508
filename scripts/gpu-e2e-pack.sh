#!/usr/bin/env bash
# Prepares what scripts/gpu-e2e.sh needs on a GPU machine that has no network,
# no Docker and no Node: Debian bookworm's dockerd, containerd, runc and tini
# (only the binaries and the two libraries an Ubuntu 24.04 host may lack),
# this machine's Node binary, and Gantry built to JavaScript with its
# production dependencies. Everything lands in .device-pkgs/ (ignored through
# .git/info/exclude), compressed so that it travels under the device tool's
# 64 MiB limit. Run it here, on a Debian bookworm x86-64 machine with Node 20.
#
#   scripts/gpu-e2e-pack.sh            # reuses docker/node archives already built
#   FORCE=1 scripts/gpu-e2e-pack.sh    # rebuilds everything
#   SRC_REF=HEAD scripts/gpu-e2e-pack.sh  # builds Gantry from that commit, not
#                                         # from the working tree's src/
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PKG=${PKG:-$ROOT/.device-pkgs}
cd "$ROOT"
grep -qx '/.device-pkgs/' .git/info/exclude 2>/dev/null || echo '/.device-pkgs/' >> .git/info/exclude
mkdir -p "$PKG"
XZ=(xz -T4 --x86 --lzma2=preset=9e,dict=64MiB)

# 1. Docker engine: binaries only.
if [ -n "${FORCE:-}" ] || [ ! -s "$PKG/docker-min.tar.xz" ]; then
  rm -rf "$PKG/debs" "$PKG/x" "$PKG/stage"
  mkdir -p "$PKG/debs" "$PKG/x" "$PKG/stage/bin" "$PKG/stage/lib"
  (cd "$PKG/debs" && apt-get download docker.io containerd runc tini libdevmapper1.02.1 libseccomp2 busybox-static)
  for f in "$PKG"/debs/*.deb; do dpkg -x "$f" "$PKG/x"; done
  cp "$PKG"/x/usr/sbin/dockerd "$PKG"/x/usr/bin/containerd "$PKG"/x/usr/bin/containerd-shim-runc-v2 "$PKG"/x/usr/sbin/runc "$PKG/stage/bin/"
  cp "$PKG"/x/usr/bin/tini-static "$PKG/stage/bin/docker-init"
  cp "$PKG"/x/bin/busybox "$PKG/stage/bin/busybox"
  cp "$PKG"/x/lib/x86_64-linux-gnu/libdevmapper.so.1.02.1 "$PKG/stage/lib/"
  cp "$PKG"/x/usr/lib/x86_64-linux-gnu/libseccomp.so.2.5.4 "$PKG/stage/lib/libseccomp.so.2"
  tar -C "$PKG/stage" -cf - . | "${XZ[@]}" > "$PKG/docker-min.tar.xz"
  rm -rf "$PKG/x" "$PKG/stage"
fi

# 2. Node (the official-build binary of this machine: glibc 2.28+ is enough).
if [ -n "${FORCE:-}" ] || [ ! -s "$PKG/node.xz" ]; then
  "${XZ[@]}" -c "$(readlink -f "$(command -v node)")" > "$PKG/node.xz"
fi

# 3. Gantry: production dependencies (installed once), and the current source built.
APP=$PKG/app
if [ -n "${FORCE:-}" ] || [ ! -d "$APP/node_modules" ]; then
  rm -rf "$APP" && mkdir -p "$APP"
  cp package.json package-lock.json "$APP/"
  (cd "$APP" && npm ci --omit=dev --no-audit --no-fund)
fi
BUILD=$ROOT
if [ -n "${SRC_REF:-}" ]; then
  BUILD=$(mktemp -d /tmp/gantry-pack-src.XXXXXX)
  git archive "$SRC_REF" src package.json tsconfig.json tsconfig.build.json | tar -C "$BUILD" -xf -
  ln -s "$ROOT/node_modules" "$BUILD/node_modules"
  echo "building Gantry from $SRC_REF ($(git rev-parse --short "$SRC_REF"))"
fi
cp "$BUILD/package.json" "$APP/"
rm -rf "$APP/dist"
(cd "$BUILD" && npx tsc -p tsconfig.build.json --outDir "$APP/dist")
mkdir -p "$APP/dist/src/ui" && cp -r "$BUILD/src/ui/public" "$APP/dist/src/ui/public"
[ "$BUILD" != "$ROOT" ] && rm -rf "$BUILD"
# Trim what Node never loads at run time.
B=$APP/node_modules/better-sqlite3
rm -rf "$B/deps" "$B/src" "$B/build/Release/obj" "$B/build/Release/obj.target" "$B/build/Release/.deps" \
  "$B/build/Release/sqlite3.a" "$B/build/Release/test_extension.node" "$B/build/deps" "$APP/node_modules/@types"
find "$APP/node_modules" \( -name '*.md' -o -name '*.d.ts' -o -name '*.map' -o -name '*.d.mts' -o -name '*.d.cts' \) -type f -delete
tar -C "$APP" -cf - package.json dist node_modules | "${XZ[@]}" > "$PKG/app.tar.xz"

ls -la "$PKG"/*.xz
du -cb "$PKG"/*.xz | tail -1 | awk '{printf "total to carry: %.1f MiB (limit 64 MiB with the repo)\n", $1/1048576}'
