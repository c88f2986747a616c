package pipelines

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol/auth"
	"github.com/moqbridge/moqbridge/sdk"
	"github.com/moqbridge/moqbridge/sources/rtmp"
)

// rtmpHub is the shared RTMP listener of the "rtmp:" section: one
// sources/rtmp server per configured address (RTMP, RTMPS), whose
// publishes are routed by RTMP application to the pipeline that routes
// that application (RTMPRouter), or to the route of "*"; a publish no
// route takes is refused, and logged with its application. The route table
// outlives the listeners: a restart of the listeners (a changed "rtmp:"
// section) keeps every pipeline's route.
//
// Who may publish: a stream key in the route's Keys; without "server.auth",
// any key when Keys is empty; with it, any other key needs what a MOQ
// publisher needs at the broadcast's path: a token (KEY?jwt=TOKEN, or the
// token as the stream key) allowing publishing there, or a path under the
// public prefix.
type rtmpHub struct {
	log *slog.Logger

	mu      sync.Mutex
	routes  map[string]*hubRoute // by application; "*" takes the others
	servers []*hubServer
	// auth is the relay's authorizer ("server.auth"), nil when off: a
	// publish whose stream key the route's Keys do not allow then needs
	// a token allowing publishing at its path.
	auth *auth.Authorizer
}

// hubRoute is a route a running pipeline holds.
type hubRoute struct {
	route RTMPRoute
	pub   *sdk.Publisher
	ctx   context.Context
}

// hubServer is one running listener.
type hubServer struct {
	srv    *rtmp.Server
	cancel context.CancelFunc
	done   chan struct{}
}

func newRTMPHub(log *slog.Logger) *rtmpHub {
	return &rtmpHub{log: log, routes: make(map[string]*hubRoute)}
}

// Route implements RTMPRouter: the publishes of route.App go to p until
// ctx ends; then the publishes of that route still live are
// disconnected and their broadcasts end.
func (h *rtmpHub) Route(ctx context.Context, route RTMPRoute, p *sdk.Publisher) error {
	if route.App == "" {
		return sdk.Permanent(errors.New("rtmp route: no application"))
	}
	if route.PathTemplate == "" {
		route.PathTemplate = rtmp.DefaultPathTemplate
	}
	hr := &hubRoute{route: route, pub: p, ctx: ctx}
	h.mu.Lock()
	if _, taken := h.routes[route.App]; taken {
		h.mu.Unlock()
		return sdk.Permanent(fmt.Errorf("rtmp route: application %q is routed by another pipeline", route.App))
	}
	h.routes[route.App] = hr
	h.mu.Unlock()
	<-ctx.Done()
	h.mu.Lock()
	if h.routes[route.App] == hr {
		delete(h.routes, route.App)
	}
	h.mu.Unlock()
	return nil
}

// route is the listeners' rtmp.Config.Route: the route of the request's
// application (or "*"), its stream keys and its path template.
func (h *rtmpHub) route(req rtmp.PublishRequest) (rtmp.PublishRoute, error) {
	h.mu.Lock()
	hr := h.routes[req.App]
	if hr == nil {
		hr = h.routes["*"]
	}
	h.mu.Unlock()
	if hr == nil {
		return rtmp.PublishRoute{}, fmt.Errorf("no pipeline takes the RTMP application %q", req.App)
	}
	path := strings.NewReplacer("{app}", req.App, "{key}", req.Key).Replace(hr.route.PathTemplate)
	switch {
	case len(hr.route.Keys) > 0 && keyIn(req.Key, hr.route.Keys):
	case h.authorizer() != nil:
		if _, err := AuthorizeRTMP(h.authorizer(), req, path, false); err != nil {
			return rtmp.PublishRoute{}, err
		}
	case len(hr.route.Keys) > 0:
		return rtmp.PublishRoute{}, errors.New("stream key not allowed")
	}
	return rtmp.PublishRoute{Publisher: hr.pub, Path: path, Context: hr.ctx, Linger: hr.route.Linger, Replace: hr.route.Replace}, nil
}

func (h *rtmpHub) authorizer() *auth.Authorizer {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.auth
}

// setAuth makes az (nil: none) decide on the publishes the routes' Keys
// do not allow.
func (h *rtmpHub) setAuth(az *auth.Authorizer) {
	h.mu.Lock()
	h.auth = az
	h.mu.Unlock()
}

// AuthorizeRTMP decides, with the relay's JWT keys, on an RTMP publish
// whose stream key no configured key allows, as the relay decides on a
// MOQ publisher, and returns the path the broadcast is published at. The
// token is the stream key's jwt parameter (OBS stream key
// alice?jwt=TOKEN), which must allow publishing at path; or the whole
// stream key when it is a JWT: with pathFromToken the broadcast is then
// the one path the token allows publishing at (a template that holds the
// key names no sensible path), else path, which the token must allow.
// Without a token, the public prefix applies.
func AuthorizeRTMP(az *auth.Authorizer, req rtmp.PublishRequest, path string, pathFromToken bool) (string, error) {
	token := req.Query.Get("jwt")
	keyIsToken := token == "" && looksLikeJWT(req.Key)
	if keyIsToken {
		token = req.Key
	}
	u := &url.URL{Path: "/"}
	if token != "" {
		u.RawQuery = url.Values{"jwt": {token}}.Encode()
	}
	g, err := az.Authorize(u)
	switch {
	case err != nil && token == "":
		return "", errors.New("stream key not allowed, and it carries no token (KEY?jwt=TOKEN)")
	case err != nil:
		return "", err
	}
	if keyIsToken && pathFromToken {
		if len(g.Publish) != 1 || g.Publish[0] == "" {
			return "", errors.New("a token used as the stream key must allow publishing at exactly one path")
		}
		return g.Publish[0], nil
	}
	for _, prefix := range g.Publish {
		if moq.HasPathPrefix(moq.CleanPath(path), prefix) {
			return path, nil
		}
	}
	if token == "" {
		return "", fmt.Errorf("stream key not allowed, and %s is outside the public prefix (a token in the stream key, KEY?jwt=TOKEN, allows it)", path)
	}
	return "", fmt.Errorf("the token does not allow publishing at %s", path)
}

// looksLikeJWT reports whether s has the shape of a compact JWS: three
// base64url parts, the first starting like a JSON object ("eyJ").
func looksLikeJWT(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || !strings.HasPrefix(parts[0], "eyJ") {
		return false
	}
	for _, p := range parts {
		if strings.IndexFunc(p, func(c rune) bool {
			return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_')
		}) >= 0 {
			return false
		}
	}
	return true
}

// keyIn reports whether key is one of keys, comparing each in constant
// time.
func keyIn(key string, keys []string) bool {
	ok := false
	for _, k := range keys {
		if subtle.ConstantTimeCompare([]byte(k), []byte(key)) == 1 {
			ok = true
		}
	}
	return ok
}

// configure starts the listeners of cfg (none when nil); tlsConfig gives
// the RTMPS TLS configuration. The previous listeners must be stopped.
func (h *rtmpHub) configure(cfg *RTMPConfig, tlsConfig func() (*tls.Config, error)) error {
	if cfg == nil {
		return nil
	}
	base := rtmp.Config{MaxConns: cfg.MaxConns, MaxConnsPerAddr: cfg.MaxConnsPerAddr, Route: h.route, Logger: h.log}
	var servers []*rtmp.Server
	if cfg.Listen != "" {
		c := base
		c.Addr = cfg.Listen
		servers = append(servers, rtmp.NewServer(c))
	}
	if cfg.RTMPS != "" {
		tc, err := tlsConfig()
		if err != nil {
			return err
		}
		c := base
		c.Addr, c.TLS = cfg.RTMPS, tc
		servers = append(servers, rtmp.NewServer(c))
	}
	for _, s := range servers {
		if err := s.Listen(); err != nil {
			for _, s := range servers {
				if a := s.Addr(); a != nil {
					// Listened already: Run with an ended context closes it.
					ctx, cancel := context.WithCancel(context.Background())
					cancel()
					_ = s.Run(ctx, nil)
				}
			}
			return fmt.Errorf("rtmp: %w", err)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range servers {
		ctx, cancel := context.WithCancel(context.Background())
		hs := &hubServer{srv: s, cancel: cancel, done: make(chan struct{})}
		// Every publish is routed to a pipeline's publisher; this one,
		// closed, is never used.
		unused := sdk.NewPublisher(nil, sdk.PublisherOptions{})
		unused.Close()
		go func() {
			defer close(hs.done)
			if err := s.Run(ctx, unused); err != nil {
				h.log.Error("rtmp: the listener failed", "err", err)
			}
		}()
		h.servers = append(h.servers, hs)
	}
	return nil
}

// stop stops the listeners and waits for them: their publishers are
// disconnected and the broadcasts they fed end.
func (h *rtmpHub) stop() {
	h.mu.Lock()
	servers := h.servers
	h.servers = nil
	h.mu.Unlock()
	for _, s := range servers {
		s.cancel()
	}
	for _, s := range servers {
		<-s.done
	}
}

// addrs returns the listeners' addresses.
func (h *rtmpHub) addrs() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]string, 0, len(h.servers))
	for _, s := range h.servers {
		if a := s.srv.Addr(); a != nil {
			out = append(out, a.String())
		}
	}
	return out
}
