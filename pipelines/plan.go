package pipelines

import (
	"fmt"
	"io"
	"net/url"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/moqbridge/moqbridge/internal/rtmpurl"
)

// Plan writes the resolved configuration in plain text: the relay (its
// addresses, TLS, auth), the RTMP listener, the admin address and the log
// settings, then every pipeline: its source kind and options, the path or
// pattern it publishes or takes, its sinks with their options, and its
// restart policy. Options left at their zero value are not shown; secrets
// never are: an option whose name says key, token, secret or password
// (or whose field is tagged secret:"true") is shown as <redacted>, RTMP
// URLs without their stream key, other URLs without password or query
// values.
func (c *Config) Plan(w io.Writer) error {
	pw := &planWriter{w: w}
	if c.File != "" {
		pw.line(0, "config: %s", c.File)
	}
	c.planServer(pw)
	if r := c.RTMP; r != nil {
		var parts []string
		if r.Listen != "" {
			parts = append(parts, "rtmp on tcp "+r.Listen)
		}
		if r.RTMPS != "" {
			parts = append(parts, "rtmps on tcp "+r.RTMPS+" (the relay's certificate)")
		}
		parts = append(parts, "max_conns "+limitText(r.MaxConns), "max_conns_per_addr "+limitText(r.MaxConnsPerAddr))
		pw.line(0, "rtmp listener: %s", strings.Join(parts, ", "))
	} else {
		pw.line(0, "rtmp listener: none")
	}
	if c.Admin.Listen != "" {
		pw.line(0, "admin: http://%s (/metrics, /healthz, /readyz)", c.Admin.Listen)
	} else {
		pw.line(0, "admin: off")
	}
	pw.line(0, "log: %s, %s", c.Log.Level, c.Log.Format)
	for _, p := range c.Pipelines {
		pw.line(0, "")
		p.plan(pw)
	}
	if len(c.Pipelines) == 0 {
		pw.line(0, "")
		pw.line(0, "no pipelines")
	}
	return pw.err
}

func (c *Config) planServer(pw *planWriter) {
	s := c.Server
	if !s.Enabled {
		pw.line(0, "relay: off (pipelines meet in an Origin no peer reaches)")
		return
	}
	tcp := "tcp off"
	switch s.TCP {
	case "http":
		tcp = "tcp " + s.Listen + " http (WebSocket, /certificate.sha256)"
	case "https":
		tcp = "tcp " + s.Listen + " https (WebSocket over TLS)"
	}
	pw.line(0, "relay: udp %s (QUIC, WebTransport), %s", s.Listen, tcp)
	if s.Cert != "" {
		pw.line(1, "tls: cert %s, key %s", s.Cert, s.Key)
	} else {
		pw.line(1, "tls: generated development certificate")
	}
	a := s.Auth
	if len(a.Keys) == 0 && len(a.Secrets) == 0 && a.Public == nil {
		pw.line(1, "auth: off (anyone may publish and subscribe)")
	} else {
		var parts []string
		if len(a.Keys) > 0 {
			parts = append(parts, "keys "+strings.Join(a.Keys, ", "))
		}
		if len(a.Secrets) > 0 {
			parts = append(parts, "secrets "+strings.Join(a.Secrets, ", "))
		}
		if a.Public != nil {
			parts = append(parts, fmt.Sprintf("open without a token under %q", *a.Public))
		}
		pw.line(1, "auth: on (%s)", strings.Join(parts, "; "))
	}
	if len(s.AllowOrigins) > 0 {
		pw.line(1, "browser origins: %s", strings.Join(s.AllowOrigins, ", "))
	} else {
		pw.line(1, "browser origins: any")
	}
	liveness := func(d time.Duration) string {
		if d == 0 {
			return "default"
		}
		return formatDuration(d)
	}
	pw.line(1, "liveness: idle_timeout %s, keep_alive %s", liveness(s.IdleTimeout), liveness(s.KeepAlive))
	if limits := optionText(reflectValue(&s.Limits)); limits != "" {
		pw.line(1, "limits: %s", limits)
	}
}

func (p *Pipeline) plan(pw *planWriter) {
	pw.line(0, "pipeline %s (%s)", p.Name, p.Pos)
	if p.Source != nil {
		pw.line(1, "source: %s", kindText(p.Source.Kind.Name, p.Source.Options))
		if p.Source.Paths != p.Path {
			pw.line(1, "publishes: %s (path %s)", p.Source.Paths, p.Path)
		} else {
			pw.line(1, "publishes: %s", p.Path)
		}
	} else {
		pw.line(1, "takes: %s (broadcasts already in the Origin)", p.From)
	}
	if len(p.Sinks) == 0 {
		pw.line(1, "sinks: none (the relay serves what it publishes)")
	} else {
		pw.line(1, "sinks:")
		for _, s := range p.Sinks {
			pw.line(2, "[%d] %s", s.Index, kindText(s.Kind.Name, s.Options))
		}
	}
	r := p.Restart
	giveUp := "never gives up"
	if r.GiveUpAfter > 0 {
		giveUp = "gives up after " + formatDuration(r.GiveUpAfter) + " of failures"
	}
	pw.line(1, "restart: after %s doubling to %s, jitter %s, %s", formatDuration(r.Min), formatDuration(r.Max),
		strconv.FormatFloat(r.Jitter, 'g', -1, 64), giveUp)
}

func kindText(name string, opts any) string {
	if o := optionText(reflectValue(opts)); o != "" {
		return name + " " + o
	}
	return name
}

func limitText(n int) string {
	switch {
	case n < 0:
		return "none"
	case n == 0:
		return "default"
	}
	return strconv.Itoa(n)
}

type planWriter struct {
	w   io.Writer
	err error
}

func (pw *planWriter) line(indent int, format string, args ...any) {
	if pw.err != nil {
		return
	}
	_, pw.err = fmt.Fprintf(pw.w, "%s%s\n", strings.Repeat("  ", indent), fmt.Sprintf(format, args...))
}

func reflectValue(x any) reflect.Value {
	v := reflect.ValueOf(x)
	for v.Kind() == reflect.Pointer && !v.IsNil() {
		v = v.Elem()
	}
	return v
}

// optionText writes an options struct as "key=value" pairs in field
// order, nested structs as dotted keys, leaving out zero values.
func optionText(v reflect.Value) string {
	if !v.IsValid() || v.Kind() != reflect.Struct {
		return ""
	}
	var pairs []string
	var walk func(v reflect.Value, prefix string)
	walk = func(v reflect.Value, prefix string) {
		for _, f := range fieldsOf(v.Type()) {
			fv, ok := fieldByIndex(v, f.index)
			if !ok || fv.IsZero() {
				continue
			}
			name := prefix + f.name
			sf := v.Type().FieldByIndex(f.index)
			if isSecretName(f.name) || sf.Tag.Get("secret") == "true" {
				pairs = append(pairs, name+"=<redacted>")
				continue
			}
			inner := fv
			for inner.Kind() == reflect.Pointer {
				inner = inner.Elem()
			}
			if inner.Kind() == reflect.Struct && !isStringer(inner) {
				walk(inner, name+".")
				continue
			}
			pairs = append(pairs, name+"="+valueText(fv))
		}
	}
	walk(v, "")
	return strings.Join(pairs, " ")
}

func fieldByIndex(v reflect.Value, index []int) (reflect.Value, bool) {
	for i, x := range index {
		if i > 0 {
			for v.Kind() == reflect.Pointer {
				if v.IsNil() {
					return reflect.Value{}, false
				}
				v = v.Elem()
			}
		}
		v = v.Field(x)
	}
	return v, true
}

func isStringer(v reflect.Value) bool {
	_, ok := v.Interface().(fmt.Stringer)
	if !ok && v.CanAddr() {
		_, ok = v.Addr().Interface().(fmt.Stringer)
	}
	return ok
}

// valueText writes one option's value for Plan.
func valueText(v reflect.Value) string {
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return "null"
		}
		v = v.Elem()
	}
	if v.Type() == durationType {
		return formatDuration(time.Duration(v.Int()))
	}
	if v.CanInterface() {
		if s, ok := v.Interface().(fmt.Stringer); ok {
			return quoteIfNeeded(s.String())
		}
	}
	switch v.Kind() {
	case reflect.String:
		return quoteIfNeeded(redactValue(v.String()))
	case reflect.Slice, reflect.Array:
		items := make([]string, v.Len())
		for i := range items {
			items[i] = valueText(v.Index(i))
		}
		return "[" + strings.Join(items, ", ") + "]"
	case reflect.Map:
		keys := make([]string, 0, v.Len())
		vals := make(map[string]string)
		for it := v.MapRange(); it.Next(); {
			k := fmt.Sprint(it.Key().Interface())
			keys = append(keys, k)
			if isSecretName(k) {
				vals[k] = "<redacted>"
			} else {
				vals[k] = valueText(it.Value())
			}
		}
		sort.Strings(keys)
		items := make([]string, len(keys))
		for i, k := range keys {
			items[i] = k + ": " + vals[k]
		}
		return "{" + strings.Join(items, ", ") + "}"
	case reflect.Struct:
		return "{" + optionText(v) + "}"
	}
	return fmt.Sprint(v.Interface())
}

// secretWords are the words of an option name that mark its value as a
// secret.
var secretWords = []string{"key", "keys", "token", "tokens", "secret", "secrets", "password", "passwords", "passwd",
	"jwt", "credential", "credentials", "auth", "authorization", "cookie", "bearer"}

func isSecretName(name string) bool {
	for w := range strings.FieldsFuncSeq(strings.ToLower(name), func(r rune) bool { return r == '_' || r == '-' || r == '.' }) {
		if indexOf(secretWords, w) >= 0 {
			return true
		}
	}
	return false
}

// redactValue hides what a URL may carry in a string option: an RTMP
// URL's stream key, a password, the values of a query (tokens travel
// there: ?jwt=…).
func redactValue(s string) string {
	low := strings.ToLower(s)
	if strings.HasPrefix(low, "rtmp://") || strings.HasPrefix(low, "rtmps://") {
		return rtmpurl.Redact(s)
	}
	if !strings.Contains(s, "://") {
		return s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "<redacted URL>"
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "redacted")
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			q[k] = []string{"redacted"}
		}
		u.RawQuery = q.Encode()
	}
	u.Fragment, u.RawFragment = "", ""
	return u.String()
}

func quoteIfNeeded(s string) string {
	if s == "" || strings.ContainsAny(s, " \t\n\"'=[]{},") || strconv.Quote(s) != `"`+s+`"` {
		return strconv.Quote(s)
	}
	return s
}
