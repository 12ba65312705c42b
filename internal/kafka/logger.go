package kafka

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// clientLogger adapts slog to franz-go's kgo.Logger, so the Kafka clients
// write into the process's one log format.
type clientLogger struct{ log *slog.Logger }

// Level implements kgo.Logger: warnings and errors, and franz-go's info
// lines (group joins, metadata refreshes) when the process logs at debug;
// franz-go's own debug output is a protocol trace and stays off.
func (l clientLogger) Level() kgo.LogLevel {
	ctx := context.Background()
	switch {
	case l.log.Enabled(ctx, slog.LevelDebug):
		return kgo.LogLevelInfo
	case l.log.Enabled(ctx, slog.LevelWarn):
		return kgo.LogLevelWarn
	case l.log.Enabled(ctx, slog.LevelError):
		return kgo.LogLevelError
	}
	return kgo.LogLevelNone
}

// Log implements kgo.Logger; keyvals are already slog's alternating pairs.
// franz-go's info lines go out at debug, as Level promised.
func (l clientLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	lvl := slogLevel(int8(level))
	if lvl == slog.LevelInfo {
		lvl = slog.LevelDebug
	}
	l.log.Log(context.Background(), lvl, msg, keyvals...)
}

// EmbeddedOption configures StartEmbedded.
type EmbeddedOption func(*[]kfake.Opt)

// EmbeddedLogger sends the embedded broker's own log lines to log.
func EmbeddedLogger(log *slog.Logger) EmbeddedOption {
	return func(opts *[]kfake.Opt) { *opts = append(*opts, kfake.WithLogger(brokerLogger{log})) }
}

// slogLevel maps franz-go's levels (kgo and kfake share the numbering:
// 1 error, 2 warn, 3 info, 4 debug) to slog's.
func slogLevel(level int8) slog.Level {
	switch level {
	case 1:
		return slog.LevelError
	case 2:
		return slog.LevelWarn
	case 3:
		return slog.LevelInfo
	}
	return slog.LevelDebug
}

// brokerLogger adapts slog to the embedded broker's kfake.Logger. kfake
// logs group membership at info on every join; only warnings and errors
// are kept unless the process logs at debug.
type brokerLogger struct{ log *slog.Logger }

// Logf implements kfake.Logger.
func (l brokerLogger) Logf(level kfake.LogLevel, format string, args ...any) {
	lvl := slogLevel(int8(level))
	if lvl == slog.LevelInfo {
		lvl = slog.LevelDebug
	}
	ctx := context.Background()
	if l.log.Enabled(ctx, lvl) {
		l.log.Log(ctx, lvl, fmt.Sprintf(format, args...))
	}
}
