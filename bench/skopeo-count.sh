#!/bin/sh
# skopeo as the benchmark runs it: count every process (one line each, appended atomically),
# and give each benchmark run its own blob-info cache (a private mount namespace binds the
# run's directory over /var/lib/containers/cache), so no run learns from an earlier one.
[ -n "$BENCH_SKOPEO_COUNT" ] && echo x >> "$BENCH_SKOPEO_COUNT"
if [ "$BENCH_UNSHARE" = 1 ] && [ -n "$BENCH_BIC_DIR" ]; then
  exec unshare -m sh -c 'mount --bind "$BENCH_BIC_DIR" /var/lib/containers/cache && exec skopeo "$@"' skopeo "$@"
fi
exec skopeo "$@"
