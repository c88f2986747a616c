package transport

import (
	"context"
	"log/slog"
	"regexp"
)

// Tokens ride in URLs (`?jwt=…`, as the reference relay expects them), and
// URLs reach logs: the HTTP/3 server logs every request URI at debug level,
// errors quote the URL they failed on. RedactTokens wraps a logger so that
// no line it writes carries a token.

// tokenParam matches the value of a jwt query parameter.
var tokenParam = regexp.MustCompile(`((?:^|[?&;\s"'])jwt=)[^&\s"']*`)

// RedactToken returns s with the value of every jwt query parameter
// replaced by REDACTED.
func RedactToken(s string) string {
	return tokenParam.ReplaceAllString(s, "${1}REDACTED")
}

// RedactTokens returns a logger that writes what l writes, with every jwt
// query parameter in the message and in string, error and Stringer
// attributes (groups included) redacted.
func RedactTokens(l *slog.Logger) *slog.Logger {
	if _, ok := l.Handler().(redactingHandler); ok {
		return l
	}
	return slog.New(redactingHandler{l.Handler()})
}

type redactingHandler struct{ next slog.Handler }

func (h redactingHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

func (h redactingHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, RedactToken(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redactAttr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h redactingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		red[i] = redactAttr(a)
	}
	return redactingHandler{h.next.WithAttrs(red)}
}

func (h redactingHandler) WithGroup(name string) slog.Handler {
	return redactingHandler{h.next.WithGroup(name)}
}

// redactAttr redacts tokens in a's value: strings, errors and Stringers are
// turned into their redacted text, groups attribute by attribute.
func redactAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, RedactToken(v.String()))
	case slog.KindGroup:
		group := v.Group()
		red := make([]any, len(group))
		for i, g := range group {
			red[i] = redactAttr(g)
		}
		return slog.Group(a.Key, red...)
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			return slog.String(a.Key, RedactToken(x.Error()))
		case interface{ String() string }:
			return slog.String(a.Key, RedactToken(x.String()))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}
