// Package redact keeps secrets out of logs and error messages: the JWT a
// relay URL carries (?jwt=…, as the reference relay expects it), and any
// other secret a caller names (a stream key, a token given on its own).
// It owns only the rewriting of text; what is secret is the caller's to
// say.
package redact

import (
	"context"
	"log/slog"
	"regexp"
)

// tokenParam matches the value of a jwt query parameter.
var tokenParam = regexp.MustCompile(`((?:^|[?&;\s"'])jwt=)[^&\s"']*`)

// Token returns s with the value of every jwt query parameter replaced by
// REDACTED.
func Token(s string) string {
	return tokenParam.ReplaceAllString(s, "${1}REDACTED")
}

// Logger returns a logger that writes what l writes with hide applied to
// the message and to every string, error and Stringer attribute (groups
// included). Wrapping a logger Logger made again adds hide to the one
// it has.
func Logger(l *slog.Logger, hide func(string) string) *slog.Logger {
	if h, ok := l.Handler().(handler); ok {
		inner := h.hide
		return slog.New(handler{next: h.next, hide: func(s string) string { return hide(inner(s)) }})
	}
	return slog.New(handler{next: l.Handler(), hide: hide})
}

// TokenLogger is Logger with Token, applied once however often it wraps.
func TokenLogger(l *slog.Logger) *slog.Logger {
	if h, ok := l.Handler().(handler); ok && h.tokens {
		return l
	}
	return slog.New(handler{next: l.Handler(), hide: Token, tokens: true})
}

// Error returns err with hide applied to its message; errors.Is and
// errors.As see the original. nil stays nil.
func Error(err error, hide func(string) string) error {
	if err == nil {
		return nil
	}
	return &hidden{msg: hide(err.Error()), err: err}
}

// TokenError is Error with Token: err with its jwt query parameters
// hidden.
func TokenError(err error) error { return Error(err, Token) }

// hidden is an error whose message has its secrets hidden.
type hidden struct {
	msg string
	err error
}

func (e *hidden) Error() string { return e.msg }
func (e *hidden) Unwrap() error { return e.err }

// handler applies hide to every record before next writes it.
type handler struct {
	next   slog.Handler
	hide   func(string) string
	tokens bool // hide is Token (TokenLogger)
}

func (h handler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

func (h handler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, h.hide(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.attr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		red[i] = h.attr(a)
	}
	return handler{next: h.next.WithAttrs(red), hide: h.hide, tokens: h.tokens}
}

func (h handler) WithGroup(name string) slog.Handler {
	return handler{next: h.next.WithGroup(name), hide: h.hide, tokens: h.tokens}
}

// attr applies hide to a's value: strings, errors and Stringers become
// their hidden text, groups are done attribute by attribute.
func (h handler) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, h.hide(v.String()))
	case slog.KindGroup:
		group := v.Group()
		red := make([]any, len(group))
		for i, g := range group {
			red[i] = h.attr(g)
		}
		return slog.Group(a.Key, red...)
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			return slog.String(a.Key, h.hide(x.Error()))
		case interface{ String() string }:
			return slog.String(a.Key, h.hide(x.String()))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}
