#!/usr/bin/env bash
# build-native.sh DEST: compile the sandbox's two native helpers into DEST
# (scripts/install.sh and the Dockerfile both call this; DEST is inside the
# sandbox venv, which every worker jail mounts read-only):
#   libpyexec_spawn.so  the single-copy spawn of a run (worker/native/spawn.c)
#   run-init            pid 1 of each run (worker/native/run_init.c), static
set -euo pipefail
dest=${1:?usage: build-native.sh DEST}
src=$(cd "$(dirname "$0")/../worker/native" && pwd)
cc=${CC:-cc}
mkdir -p "$dest"
# -U_FORTIFY_SOURCE: spawn.c longjmps from the init's stack to the caller's,
# which glibc's fortified longjmp would refuse.
"$cc" -O2 -Wall -Wextra -Werror -U_FORTIFY_SOURCE -shared -fPIC -o "$dest/libpyexec_spawn.so.tmp" "$src/spawn.c"
"$cc" -O2 -Wall -Wextra -Werror -static -o "$dest/run-init.tmp" "$src/run_init.c"
mv -f "$dest/libpyexec_spawn.so.tmp" "$dest/libpyexec_spawn.so"
mv -f "$dest/run-init.tmp" "$dest/run-init"
chmod 755 "$dest/libpyexec_spawn.so" "$dest/run-init"
