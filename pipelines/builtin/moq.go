package builtin

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/moqbridge/moqbridge/internal/redact"
	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/pipelines"
	"github.com/moqbridge/moqbridge/protocol"
	"github.com/moqbridge/moqbridge/sdk"
	moqsink "github.com/moqbridge/moqbridge/sinks/moq"
	moqsource "github.com/moqbridge/moqbridge/sources/moq"
)

// RelayOptions are the options of the kinds that connect to a remote MOQ
// Lite relay, shared by the moq source and sink.
type RelayOptions struct {
	// URL is the remote relay: moql://HOST:PORT (QUIC),
	// https://HOST:PORT/ (WebTransport), ws:// or wss:// (WebSocket), or
	// http://HOST:PORT/ for a development relay (required).
	URL string `yaml:"url"`
	// Fingerprint accepts exactly the relay certificate with this SHA-256
	// (64 hex digits, colons allowed), as "moqbridge serve" prints it
	// (default: the certificate is verified against the system's roots).
	Fingerprint string `yaml:"fingerprint"`
	// Token is a JWT the relay authorizes the connection with, sent as
	// the URL's jwt query parameter (so not over moql://, raw QUIC, which
	// carries no URL); it never appears in logs or errors. Keep it out of
	// the file with ${VAR}.
	Token string `yaml:"token"`
	// Backoff spaces the attempts at reaching the relay and the
	// reconnections after a loss.
	Backoff BackoffOptions `yaml:"backoff"`
}

// validate returns the FieldErrors of the relay options.
func (o *RelayOptions) validate() []error {
	var errs []error
	if o.URL == "" {
		errs = append(errs, fieldErr("url", "required: moql://HOST:PORT, https://HOST:PORT/, ws(s)://… or http://HOST:PORT/"))
	} else if err := checkRelayURL(o.URL); err != nil {
		errs = append(errs, &pipelines.FieldError{Field: "url", Err: err})
	}
	if o.Fingerprint != "" {
		if _, err := parseFingerprint(o.Fingerprint); err != nil {
			errs = append(errs, &pipelines.FieldError{Field: "fingerprint", Err: err})
		}
	}
	if strings.ContainsFunc(o.Token, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		errs = append(errs, fieldErr("token", "holds spaces or control characters: not a JWT"))
	}
	if u, err := url.Parse(o.URL); err == nil {
		switch {
		case o.Token != "" && u.Query().Has("jwt"):
			errs = append(errs, fieldErr("token", "the url has a jwt query parameter already: set one of them"))
		case (o.Token != "" || u.Query().Has("jwt")) && (u.Scheme == "moql" || u.Scheme == "moqt"):
			// Raw QUIC has no request that could carry the URL's query.
			errs = append(errs, fieldErr("token", "a raw QUIC connection (%s://) carries no token: use https:// (WebTransport) or wss:// (WebSocket)", u.Scheme))
		}
	}
	return append(errs, o.Backoff.validate("backoff")...)
}

// checkRelayURL refuses a URL the protocol cannot dial; the error shows
// the URL without its query or user information.
func checkRelayURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("not a valid URL: %w", errors.Unwrap(err))
	}
	if moqsource.CheckURL(raw) != nil {
		return fmt.Errorf("%s is not a relay URL: use moql://HOST:PORT (QUIC), https://HOST:PORT/ (WebTransport), ws:// or wss:// (WebSocket), or http://HOST:PORT/ for a development relay", redactHTTP(u))
	}
	return nil
}

// parseFingerprint reads a SHA-256 in hex, with or without colons.
func parseFingerprint(s string) ([32]byte, error) {
	var fp [32]byte
	b, err := hex.DecodeString(strings.TrimPrefix(strings.ReplaceAll(s, ":", ""), "0x"))
	if err != nil || len(b) != len(fp) {
		return fp, fmt.Errorf("want 64 hex digits (a SHA-256), got %q", s)
	}
	copy(fp[:], b)
	return fp, nil
}

// relay is what the adapters of sources/moq and sinks/moq get from
// RelayOptions: the URL with the token, the dial options, and a logger
// and error wrapper that keep the token (and the URL's query and
// password) out of what they write.
type relay struct {
	url     string
	dial    []protocol.DialOption
	backoff sdk.Backoff
	hide    *strings.Replacer
	log     *slog.Logger
}

func (o *RelayOptions) relay(log *slog.Logger) (*relay, error) {
	if errs := o.validate(); len(errs) > 0 {
		return nil, sdk.Permanent(errors.Join(errs...))
	}
	u, _ := url.Parse(o.URL)
	if o.Token != "" {
		q := u.Query()
		q.Set("jwt", o.Token)
		u.RawQuery = q.Encode()
	}
	r := &relay{url: u.String(), backoff: o.Backoff.sdk()}
	// Every form in which a secret may be written: the whole URL (as
	// given, and with the token) first, then the parts that are secret.
	shown := redactHTTP(u)
	pairs := []string{r.url, shown, o.URL, shown}
	for _, s := range []string{o.Token, url.QueryEscape(o.Token), u.Query().Get("jwt")} {
		if s != "" {
			pairs = append(pairs, s, "<redacted>")
		}
	}
	if pw, ok := u.User.Password(); ok && pw != "" {
		pairs = append(pairs, pw, "<redacted>")
	}
	r.hide = strings.NewReplacer(pairs...)
	if o.Fingerprint != "" {
		fp, _ := parseFingerprint(o.Fingerprint)
		r.dial = append(r.dial, protocol.WithFingerprint(fp))
	}
	if log == nil {
		log = slog.Default()
	}
	r.log = redact.Logger(log, r.hide.Replace)
	return r, nil
}

// wrap returns err with the secrets hidden from its message; errors.Is
// and errors.As (sdk.IsPermanent) see through it.
func (r *relay) wrap(err error) error { return redact.Error(err, r.hide.Replace) }

// MOQSourceOptions are the options of the moq source: broadcasts of a
// remote MOQ Lite relay mirrored into the local Origin.
type MOQSourceOptions struct {
	// RelayOptions: url, fingerprint, token, backoff.
	RelayOptions `yaml:",inline"`
	// Broadcast is the remote broadcast to mirror, at the pipeline's path
	// (a path without placeholders; when the pipeline has none, the
	// broadcast's own). Exactly one of broadcast and prefix is set.
	Broadcast string `yaml:"broadcast"`
	// Prefix mirrors every broadcast announced under this remote prefix
	// ("/": every broadcast of the relay), each at the pipeline's path
	// used as a template: {path} is the remote path, {name} the path
	// relative to the prefix (default "{path}").
	Prefix string `yaml:"prefix"`
}

// Validate implements pipelines.Validator.
func (o *MOQSourceOptions) Validate() error {
	errs := o.validate()
	switch {
	case o.Broadcast == "" && o.Prefix == "":
		errs = append(errs, fieldErr("broadcast", "either broadcast (one remote broadcast) or prefix (every broadcast under it) is required"))
	case o.Broadcast != "" && o.Prefix != "":
		errs = append(errs, fieldErr("prefix", "broadcast and prefix exclude each other: set one"))
	case o.Broadcast != "":
		if p := moq.CleanPath(o.Broadcast); p == "" || moq.ValidatePath(p) != nil {
			errs = append(errs, fieldErr("broadcast", "%q is not a broadcast path", o.Broadcast))
		}
	default:
		if err := moq.ValidatePath(moq.CleanPath(o.Prefix)); err != nil {
			errs = append(errs, &pipelines.FieldError{Field: "prefix", Err: err})
		}
	}
	return errors.Join(errs...)
}

// MOQSource is the moq source kind: it subscribes to a remote relay's
// broadcast, or to every broadcast under a prefix, and publishes what it
// gets into the Origin unchanged (pipelines.SourceKind.NewOrigin: the
// catalog, the containers and the group sequences are the remote ones). A
// broadcast is published at the pipeline's path, a prefix's broadcasts at
// the paths its template makes.
func MOQSource() pipelines.SourceKind {
	return pipelines.SourceKind{
		Name:    "moq",
		Summary: "mirrors a remote MOQ Lite relay's broadcast, or every broadcast under a prefix, reconnecting when it drops",
		Options: func() any { return &MOQSourceOptions{RelayOptions: RelayOptions{Backoff: defaultBackoff()}} },
		NewOrigin: func(env pipelines.SourceEnv, opts any) (pipelines.OriginSource, error) {
			o, err := optionsOf[MOQSourceOptions]("moq", opts)
			if err != nil {
				return nil, err
			}
			if err := o.Validate(); err != nil {
				return nil, sdk.Permanent(err)
			}
			r, err := o.relay(env.Logger)
			if err != nil {
				return nil, err
			}
			if o.Broadcast != "" {
				path := moqSourcePath(env.Path, o)
				if err := moq.ValidatePath(path); err != nil || strings.ContainsAny(path, "{}") {
					return nil, sdk.Permanent(fmt.Errorf("source moq: the pipeline's path %q: a broadcast is published at one exact path", env.Path))
				}
				src, err := moqsource.NewSource(moqsource.Config{URL: r.url, Broadcast: o.Broadcast, Dial: r.dial, Backoff: r.backoff, Logger: r.log})
				if err != nil {
					return nil, r.wrap(err)
				}
				return &moqBroadcastMirror{src: src, path: path, r: r}, nil
			}
			src, err := moqsource.NewPrefixSource(moqsource.PrefixConfig{URL: r.url, Prefix: o.Prefix, PathTemplate: moqSourcePath(env.Path, o),
				Dial: r.dial, Backoff: r.backoff, Logger: r.log})
			if err != nil {
				return nil, r.wrap(err)
			}
			return &moqPrefixMirror{src: src, r: r}, nil
		},
		Paths: func(path string, opts any) (string, error) {
			o, err := optionsOf[MOQSourceOptions]("moq", opts)
			if err != nil {
				return "", err
			}
			return MOQPaths(moqSourcePath(path, o), o.Broadcast != "")
		},
	}
}

// moqSourcePath is the pipeline's path, or when it has none what the
// source's mode takes by default: the broadcast's own path, or "{path}".
func moqSourcePath(path string, o *MOQSourceOptions) string {
	switch {
	case path != "":
		return path
	case o.Broadcast != "":
		return moq.CleanPath(o.Broadcast)
	}
	return "{path}"
}

// MOQPaths returns the path pattern of the broadcasts the moq source
// publishes: with a broadcast the path itself, with a prefix the
// template's part before its first placeholder ({path} or {name}), cut
// back to a whole segment, followed by "/*" ("mirror/{name}" →
// "mirror/*"; "{path}" → "*", every path). A prefix template without a
// placeholder would give every broadcast one path, and is refused.
func MOQPaths(template string, broadcast bool) (string, error) {
	if strings.Contains(template, "*") {
		return "", fmt.Errorf("path %q: a '*' would read as a path pattern", template)
	}
	if broadcast {
		if err := checkTemplate(template, func(string) (bool, string) { return false, "none: a broadcast is published at one exact path" }); err != nil {
			return "", fmt.Errorf("path %q: %w", template, err)
		}
		p := moq.CleanPath(template)
		if err := moq.ValidatePath(p); err != nil || p == "" {
			return "", fmt.Errorf("path %q: %w", template, errors.Join(err, moq.ErrInvalidPath))
		}
		return p, nil
	}
	if err := checkTemplate(template, func(name string) (bool, string) {
		return name == "path" || name == "name", "{path}, {name}"
	}); err != nil {
		return "", fmt.Errorf("path template %q: %w", template, err)
	}
	if !strings.Contains(template, "{") {
		return "", fmt.Errorf("path template %q: it needs {path} or {name}, or every mirrored broadcast would get the same path", template)
	}
	sample := strings.NewReplacer("{path}", "a/b", "{name}", "b").Replace(template)
	if err := moq.ValidatePath(moq.CleanPath(sample)); err != nil {
		return "", fmt.Errorf("path template %q: %w", template, err)
	}
	prefix := template[:strings.IndexByte(template, '{')]
	if j := strings.LastIndexByte(prefix, '/'); j >= 0 {
		prefix = prefix[:j]
	} else {
		prefix = ""
	}
	if prefix = moq.CleanPath(prefix); prefix == "" {
		return "*", nil
	}
	return prefix + "/*", nil
}

// moqBroadcastMirror publishes one remote broadcast at one path.
type moqBroadcastMirror struct {
	src  *moqsource.Source
	path string
	r    *relay
}

// Run implements pipelines.OriginSource.
func (m *moqBroadcastMirror) Run(ctx context.Context, origin *moq.Origin) error {
	return m.r.wrap(m.src.Publish(ctx, origin, m.path))
}

// moqPrefixMirror publishes every remote broadcast under a prefix.
type moqPrefixMirror struct {
	src *moqsource.PrefixSource
	r   *relay
}

// Run implements pipelines.OriginSource.
func (m *moqPrefixMirror) Run(ctx context.Context, origin *moq.Origin) error {
	return m.r.wrap(m.src.Publish(ctx, origin))
}

// MOQSinkOptions are the options of the moq sink: each broadcast the
// pipeline yields pushed, unchanged, to a remote MOQ Lite relay.
type MOQSinkOptions struct {
	// RelayOptions: url, fingerprint, token, backoff.
	RelayOptions `yaml:",inline"`
	// Path is the remote path, a template where {path} is the local one
	// (default "{path}": the same path).
	Path string `yaml:"path"`
}

// Validate implements pipelines.Validator.
func (o *MOQSinkOptions) Validate() error {
	errs := o.validate()
	if err := checkTemplate(o.Path, func(name string) (bool, string) { return name == "path", "{path}" }); err != nil {
		errs = append(errs, &pipelines.FieldError{Field: "path", Err: fmt.Errorf("%q: %w", o.Path, err)})
	} else if p := moq.CleanPath(strings.ReplaceAll(o.Path, "{path}", "a/b")); p == "" || moq.ValidatePath(p) != nil {
		errs = append(errs, fieldErr("path", "%q does not make a valid broadcast path", o.Path))
	}
	return errors.Join(errs...)
}

// MOQSink is the moq sink kind: it pushes each broadcast to a remote relay
// (scale-out: this relay ingests, remote ones fan out). Its sinks
// implement pipelines.StatsReporter.
func MOQSink() pipelines.SinkKind {
	return pipelines.SinkKind{
		Name:    "moq",
		Summary: "pushes each broadcast unchanged to a remote MOQ Lite relay, reconnecting with backoff",
		Options: func() any {
			return &MOQSinkOptions{RelayOptions: RelayOptions{Backoff: defaultBackoff()}, Path: "{path}"}
		},
		New: func(env pipelines.SinkEnv, opts any) (sdk.Sink, error) {
			o, err := optionsOf[MOQSinkOptions]("moq", opts)
			if err != nil {
				return nil, err
			}
			if err := o.Validate(); err != nil {
				return nil, sdk.Permanent(err)
			}
			r, err := o.relay(env.Logger)
			if err != nil {
				return nil, err
			}
			s, err := moqsink.New(moqsink.Config{URL: r.url, Path: o.Path, Dial: r.dial, Backoff: r.backoff, Origin: env.Origin, Logger: r.log})
			if err != nil {
				return nil, r.wrap(err)
			}
			return &MOQSinkAdapter{sink: s, r: r}, nil
		},
	}
}

// MOQSinkAdapter is the sink the moq kind makes: a sinks/moq Sink whose
// errors keep the token hidden, reporting pipelines.SinkCounters.
type MOQSinkAdapter struct {
	sink *moqsink.Sink
	r    *relay
}

var (
	_ sdk.Sink                = (*MOQSinkAdapter)(nil)
	_ pipelines.StatsReporter = (*MOQSinkAdapter)(nil)
)

// Run implements sdk.Sink (see sinks/moq's Sink.Run).
func (s *MOQSinkAdapter) Run(ctx context.Context, r *sdk.BroadcastReader) error {
	return s.r.wrap(s.sink.Run(ctx, r))
}

// Counters implements pipelines.StatsReporter with the sink's own
// counters (it drops whole groups, never single frames).
func (s *MOQSinkAdapter) Counters() pipelines.SinkCounters {
	c := s.sink.Counters()
	return pipelines.SinkCounters{Reconnects: c.Reconnects, DroppedGroups: c.DroppedGroups, Connected: c.Connected}
}
