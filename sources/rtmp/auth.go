package rtmp

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path"
)

// errKeyRefused refuses a stream key that no rule allows.
var errKeyRefused = errors.New("stream key not allowed")

// PublishRequest is a publish the server decides on: who asks, for which
// application and stream key, and the broadcast path the template makes
// of them.
type PublishRequest struct {
	Remote net.Addr
	// App is the RTMP application ("live" in rtmp://host/live/alice).
	App string
	// Key is the stream key without its query ("alice" of "alice?jwt=…").
	Key string
	// Query is the query of the stream key, or of the server URL.
	Query url.Values
	// Path is Config.PathTemplate over App and Key.
	Path string
}

// KeyRule allows stream keys to publish at the broadcast paths Pattern
// matches: a path.Match pattern ("live/*" matches live/alice, not
// live/a/b), or an exact path.
type KeyRule struct {
	Pattern string
	Keys    []string
}

// Validate reports a malformed pattern or a rule without keys.
func (r KeyRule) Validate() error {
	if _, err := path.Match(r.Pattern, ""); err != nil {
		return fmt.Errorf("rtmp: key rule %q: %w", r.Pattern, err)
	}
	if len(r.Keys) == 0 {
		return fmt.Errorf("rtmp: key rule %q has no keys", r.Pattern)
	}
	return nil
}

// open reports whether any stream key may publish: no keys, no rules, no
// Authorize.
func (s *Server) open() bool {
	return len(s.cfg.Keys) == 0 && len(s.cfg.KeyRules) == 0 && s.cfg.Authorize == nil
}

// authorize decides on a publish: a key of Keys, or of a KeyRule whose
// pattern matches the path, publishes at req.Path; any other is left to
// Config.Authorize, and refused without it.
func (s *Server) authorize(req PublishRequest) (string, error) {
	if s.open() || s.keyAllowed(req.Key, req.Path) {
		return req.Path, nil
	}
	if s.cfg.Authorize != nil {
		return s.cfg.Authorize(req)
	}
	return "", errKeyRefused
}

// keyAllowed reports whether key is one of Keys, or of a rule matching
// path. Every key is compared in constant time.
func (s *Server) keyAllowed(key, p string) bool {
	ok := false
	match := func(keys []string) {
		for _, k := range keys {
			if subtle.ConstantTimeCompare([]byte(k), []byte(key)) == 1 {
				ok = true
			}
		}
	}
	match(s.cfg.Keys)
	for _, r := range s.cfg.KeyRules {
		if m, _ := path.Match(r.Pattern, p); m {
			match(r.Keys)
		}
	}
	return ok
}
