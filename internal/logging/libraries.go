package logging

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/redis/go-redis/v9"
)

// RouteLibraries makes log the destination of every library that logs on
// its own, so a process writes one format: the standard library's log
// package (and so net/http's default error log and goose's default logger)
// through slog.SetDefault, and go-redis, which otherwise prints plain text
// lines to stderr. The Kafka clients and the embedded broker take their
// logger through their options (internal/kafka).
func RouteLibraries(log *slog.Logger) {
	slog.SetDefault(log)
	redis.SetLogger(redisLogger{log.With("component", "redis")})
}

// redisLogger adapts slog to go-redis's logger. go-redis logs connection
// and pool failures, which TrackOps survives (the cache degrades), so they
// are warnings.
type redisLogger struct{ log *slog.Logger }

// Printf implements go-redis's internal.Logging.
func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	msg := strings.TrimSpace(strings.TrimPrefix(fmt.Sprintf(format, v...), "redis: "))
	l.log.WarnContext(ctx, msg)
}
