#!/bin/sh
# OCI runtime wrapper registered with dockerd only on machines whose capability bounding set
# lacks CAP_SYS_RESOURCE (some VMs): `docker run --privileged` asks runc for every capability
# the engine knows, and runc then fails with "unable to apply caps: operation not permitted".
# This removes CAP_SYS_RESOURCE from the bundle's config.json before handing over to runc.
# Nothing else is changed. Installed by test/kind/engine.sh.
bundle=""
cmd=""
prev=""
for arg in "$@"; do
  case "$prev" in --bundle|-b) bundle=$arg ;; esac
  case "$arg" in
    --bundle=*) bundle=${arg#--bundle=} ;;
    create|run) [ -z "$cmd" ] && cmd=$arg ;;
  esac
  prev=$arg
done
if [ -n "$cmd" ] && [ -n "$bundle" ] && [ -f "$bundle/config.json" ]; then
  sed -i -e 's/"CAP_SYS_RESOURCE",//g' -e 's/,"CAP_SYS_RESOURCE"//g' -e 's/"CAP_SYS_RESOURCE"//g' "$bundle/config.json"
fi
exec "${CONNMETER_RUNC:-$(command -v runc || echo /usr/sbin/runc)}" "$@"
