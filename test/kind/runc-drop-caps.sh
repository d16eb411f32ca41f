#!/bin/sh
# OCI runtime wrapper registered with dockerd only on machines whose capability bounding set
# lacks CAP_SYS_RESOURCE (some VMs): `docker run --privileged` and `docker exec --privileged`
# ask runc for every capability the engine knows, and runc then fails with "unable to apply
# caps: operation not permitted". This removes CAP_SYS_RESOURCE from the container's spec
# (create/run: <bundle>/config.json) or the exec'd process's spec (exec --process <file>)
# before handing over to runc. Nothing else is changed. Installed by test/kind/engine.sh.
spec=""
bundle=""
cmd=""
prev=""
for arg in "$@"; do
  case "$prev" in
    --bundle|-b) bundle=$arg ;;
    --process|-p) spec=$arg ;;
  esac
  case "$arg" in
    --bundle=*) bundle=${arg#--bundle=} ;;
    --process=*) spec=${arg#--process=} ;;
    create|run|exec) [ -z "$cmd" ] && cmd=$arg ;;
  esac
  prev=$arg
done
case "$cmd" in
  create|run) [ -n "$bundle" ] && spec=$bundle/config.json ;;
  exec) ;;
  *) spec="" ;;
esac
if [ -n "$spec" ] && [ -f "$spec" ]; then
  sed -i -e 's/"CAP_SYS_RESOURCE",//g' -e 's/,"CAP_SYS_RESOURCE"//g' -e 's/"CAP_SYS_RESOURCE"//g' "$spec"
fi
exec "${CONNMETER_RUNC:-$(command -v runc || echo /usr/sbin/runc)}" "$@"
