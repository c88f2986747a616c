package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/moqbridge/moqbridge/pipelines"
	"github.com/moqbridge/moqbridge/protocol"
	"github.com/moqbridge/moqbridge/protocol/auth"
	"github.com/moqbridge/moqbridge/sources/rtmp"
)

// rtmpFlags are serve's RTMP ingest options.
type rtmpFlags struct {
	addr, tlsAddr string
	keys          []string // KEY or PATTERN=KEY
	template      string
	maxConns      int
	maxPerAddr    int
	linger        time.Duration
	replace       bool
}

func (r *rtmpFlags) register(f *pflag.FlagSet) {
	f.StringVar(&r.addr, "rtmp", "", "also ingest RTMP on this TCP address (e.g. :1935): rtmp://host/APP/KEY is published in the relay as the broadcast APP/KEY (see --rtmp-path); empty: no RTMP")
	f.StringVar(&r.tlsAddr, "rtmps", "", "also ingest RTMPS (RTMP over TLS, with the relay's certificate) on this TCP address (e.g. :1936)")
	f.StringArrayVar(&r.keys, "rtmp-key", nil, "stream key allowed to publish over RTMP, at any path (KEY) or at the paths a pattern matches (PATTERN=KEY, e.g. 'live/*=s3cret'); repeatable; default: any key, or with auth on a token")
	f.StringVar(&r.template, "rtmp-path", rtmp.DefaultPathTemplate, "broadcast path of an RTMP publish, from {app} and {key}")
	f.IntVar(&r.maxConns, "rtmp-max-conns", rtmp.DefaultMaxConns, "RTMP clients served at once (publishing or connecting); beyond: closed at once; 0 for no limit")
	f.IntVar(&r.maxPerAddr, "rtmp-max-conns-per-addr", rtmp.DefaultMaxConnsPerAddr, "RTMP clients one IP address (IPv6: /64) may have served at once; beyond: closed at once; 0 for no limit")
	f.DurationVar(&r.linger, "rtmp-linger", rtmp.DefaultLinger, "how long a broadcast whose RTMP publisher dropped waits for the same stream key to return and continue it; 0 ends it at once")
	f.BoolVar(&r.replace, "rtmp-replace", false, "a new RTMP publisher on a live path takes over from the old one instead of being refused")
}

// enabled reports whether any RTMP listener was asked for.
func (r *rtmpFlags) enabled() bool { return r.addr != "" || r.tlsAddr != "" }

// check reports flags that make no sense together, before anything
// listens.
func (r *rtmpFlags) check(f *pflag.FlagSet) error {
	if !r.enabled() {
		for _, name := range []string{"rtmp-key", "rtmp-path", "rtmp-max-conns", "rtmp-max-conns-per-addr", "rtmp-linger", "rtmp-replace"} {
			if f.Changed(name) {
				return fmt.Errorf("--%s needs --rtmp or --rtmps", name)
			}
		}
		return nil
	}
	if r.maxConns < 0 {
		return fmt.Errorf("--rtmp-max-conns: %d is negative (0 means no limit)", r.maxConns)
	}
	if r.maxPerAddr < 0 {
		return fmt.Errorf("--rtmp-max-conns-per-addr: %d is negative (0 means no limit)", r.maxPerAddr)
	}
	if r.linger < 0 {
		return fmt.Errorf("--rtmp-linger: %v is negative (0 ends broadcasts at once)", r.linger)
	}
	if !strings.Contains(r.template, "{key}") && !strings.Contains(r.template, "{app}") {
		return fmt.Errorf("--rtmp-path %q: has neither {app} nor {key}, so every publish would go to one path", r.template)
	}
	_, _, err := r.keyRules()
	return err
}

// keyRules splits --rtmp-key values into keys for any path and rules per
// path pattern.
func (r *rtmpFlags) keyRules() (keys []string, rules []rtmp.KeyRule, err error) {
	byPattern := map[string]int{}
	for _, v := range r.keys {
		pattern, key, ok := strings.Cut(v, "=")
		if !ok {
			keys = append(keys, v)
			continue
		}
		if key == "" {
			return nil, nil, fmt.Errorf("--rtmp-key %q: no key after '='", pattern+"=")
		}
		i, seen := byPattern[pattern]
		if !seen {
			i = len(rules)
			byPattern[pattern] = i
			rules = append(rules, rtmp.KeyRule{Pattern: pattern})
		}
		rules[i].Keys = append(rules[i].Keys, key)
	}
	for _, rule := range rules {
		if err := rule.Validate(); err != nil {
			return nil, nil, fmt.Errorf("--rtmp-key: %w", err)
		}
	}
	return keys, rules, nil
}

// servers makes the RTMP and RTMPS listeners for srv, listening already.
func (r *rtmpFlags) servers(srv *protocol.Server, cfg protocol.ServerConfig) ([]*rtmp.Server, error) {
	keys, rules, err := r.keyRules()
	if err != nil {
		return nil, err
	}
	base := rtmp.Config{
		PathTemplate:    r.template,
		Keys:            keys,
		KeyRules:        rules,
		MaxConns:        r.maxConns,
		MaxConnsPerAddr: r.maxPerAddr,
		Linger:          r.linger,
		Replace:         r.replace,
		Logger:          cfg.Logger,
	}
	if base.MaxConns == 0 {
		base.MaxConns = -1 // rtmp.Config spells "no limit" negative
	}
	if base.MaxConnsPerAddr == 0 {
		base.MaxConnsPerAddr = -1
	}
	if base.Linger == 0 {
		base.Linger = -1 // and "no linger" too
	}
	if cfg.Auth != nil {
		base.Authorize = rtmpAuthorize(cfg.Auth)
	}
	var out []*rtmp.Server
	listen := func(flag, addr string, tlsConf *tls.Config) error {
		if addr == "" {
			return nil
		}
		c := base
		c.Addr, c.TLS = addr, tlsConf
		s := rtmp.NewServer(c)
		if err := s.Listen(); err != nil {
			return fmt.Errorf("--%s: %w", flag, err)
		}
		out = append(out, s)
		return nil
	}
	if err := listen("rtmp", r.addr, nil); err != nil {
		return nil, err
	}
	if err := listen("rtmps", r.tlsAddr, &tls.Config{GetCertificate: srv.GetCertificate}); err != nil {
		return nil, err
	}
	return out, nil
}

// rtmpAuthorize decides, with the relay's JWT keys, on an RTMP publish
// whose stream key --rtmp-key does not allow (pipelines.AuthorizeRTMP):
// with a token in the stream key's jwt parameter the broadcast is the
// template's path, with the whole stream key a token it is the one path
// the token allows publishing at.
func rtmpAuthorize(az *auth.Authorizer) func(rtmp.PublishRequest) (string, error) {
	return func(req rtmp.PublishRequest) (string, error) {
		return pipelines.AuthorizeRTMP(az, req, req.Path, true)
	}
}

// printRTMPInfo tells the operator where to push.
func (r *rtmpFlags) printInfo(out io.Writer, ingests []*rtmp.Server, authOn bool) {
	for _, in := range ingests {
		ra := in.Addr().(*net.TCPAddr)
		host := "localhost"
		if !ra.IP.IsUnspecified() {
			host = ra.IP.String()
		}
		scheme := "rtmp"
		if in.TLS() {
			scheme = "rtmps"
		}
		fmt.Fprintf(out, "%s ingest listening on tcp %s\n", strings.ToUpper(scheme), ra)
		fmt.Fprintf(out, "  %s://%s/<app>/<stream key> is published as the broadcast %s\n",
			scheme, net.JoinHostPort(host, fmt.Sprint(ra.Port)), strings.NewReplacer("{app}", "<app>", "{key}", "<stream key>").Replace(r.template))
	}
	keys, rules, _ := r.keyRules()
	switch {
	case len(keys) > 0 || len(rules) > 0:
		fmt.Fprintf(out, "  stream keys: %d for any path, %d path patterns (--rtmp-key)", len(keys), len(rules))
		if authOn {
			fmt.Fprint(out, "; other keys need a token (KEY?jwt=TOKEN, or the token as the key)")
		}
		fmt.Fprintln(out)
	case authOn:
		fmt.Fprintln(out, "  stream keys: a token is needed, as KEY?jwt=TOKEN or the token as the key (--rtmp-key adds static keys)")
	default:
		fmt.Fprintln(out, "  stream keys: any — anyone may publish over RTMP; --rtmp-key restricts")
	}
	if r.linger > 0 {
		fmt.Fprintf(out, "  a publisher that drops and returns within %v continues its broadcast\n", r.linger)
	}
}
