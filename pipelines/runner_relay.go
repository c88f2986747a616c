package pipelines

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/moqbridge/moqbridge/protocol"
	"github.com/moqbridge/moqbridge/protocol/auth"
)

// relayRun is the running relay.
type relayRun struct {
	srv    *protocol.Server
	cancel context.CancelFunc
	done   chan struct{}
}

// relayConfig maps the "server:" section onto the relay's configuration,
// as serve's flags do.
func (r *Runner) relayConfig(sc ServerConfig) (protocol.ServerConfig, error) {
	cfg := protocol.ServerConfig{
		Addr:           sc.Listen,
		CertFile:       sc.Cert,
		KeyFile:        sc.Key,
		Origin:         r.origin,
		AllowedOrigins: sc.AllowOrigins,
		Liveness:       protocol.Liveness{IdleTimeout: sc.IdleTimeout, KeepAlive: sc.KeepAlive},
		Limits: protocol.Limits{
			MaxStreams:       sc.Limits.MaxStreams,
			MaxSessionBuffer: int(sc.Limits.MaxSessionBuffer),
			MaxServerBuffer:  int(sc.Limits.MaxServerBuffer),
			MaxGroupSize:     int(sc.Limits.MaxGroupSize),
		},
		MaxSessions:          sc.Limits.MaxSessions,
		MaxSessionsPerAddr:   sc.Limits.MaxSessionsPerAddr,
		MaxPendingHandshakes: sc.Limits.MaxPending,
		Logger:               r.log.With("part", "relay"),
	}
	switch sc.TCP {
	case "http", "":
		cfg.TCP = protocol.TCPHTTP
	case "https":
		cfg.TCP = protocol.TCPHTTPS
	case "off":
		cfg.TCP = protocol.TCPOff
	default:
		return cfg, fmt.Errorf("server.tcp: %q is not one of http, https, off", sc.TCP)
	}
	az, err := authOf(sc)
	if err != nil {
		return cfg, err
	}
	cfg.Auth = az
	return cfg, nil
}

// authOf returns the authorizer of "server.auth", nil when it names no
// keys, secrets or public prefix.
func authOf(sc ServerConfig) (*auth.Authorizer, error) {
	a := sc.Auth
	if len(a.Keys) == 0 && len(a.Secrets) == 0 && a.Public == nil {
		return nil, nil
	}
	az, err := auth.New(auth.Config{KeyFiles: a.Keys, SecretFiles: a.Secrets, PublicPrefix: a.Public})
	if err != nil {
		return nil, fmt.Errorf("server.auth: %w", err)
	}
	return az, nil
}

// startRelay opens the relay's socket and serves it until stopRelay; a
// failure while serving ends Run.
func (r *Runner) startRelay(sc ServerConfig) (*relayRun, error) {
	cfg, err := r.relayConfig(sc)
	if err != nil {
		return nil, err
	}
	srv, err := protocol.NewServer(cfg)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rr := &relayRun{srv: srv, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(rr.done)
		if err := srv.Serve(ctx); err != nil && ctx.Err() == nil {
			r.log.Error("pipelines: the relay failed", "err", err)
			select {
			case r.fatal <- fmt.Errorf("server: %w", err):
			default:
			}
		}
	}()
	r.server.Store(srv)
	r.log.Info("pipelines: relay listening", "addr", srv.Addr().String())
	return rr, nil
}

// stopRelay stops the relay, if it runs, and waits for it (r.life held).
func (r *Runner) stopRelay() {
	if r.relay == nil {
		return
	}
	r.server.Store(nil)
	r.relay.cancel()
	<-r.relay.done
	r.relay = nil
}

// rtmpsCertificate returns how the RTMPS listener gets its TLS
// configuration: the relay's certificate, following the relay's
// certificate reloads, or without a running relay the server section's
// files.
func (r *Runner) rtmpsCertificate(cfg *Config) func() (*tls.Config, error) {
	return func() (*tls.Config, error) {
		if r.relay != nil {
			return &tls.Config{GetCertificate: r.relay.srv.GetCertificate}, nil
		}
		if cfg.Server.Cert == "" || cfg.Server.Key == "" {
			return nil, errors.New("rtmp.rtmps: needs the relay's certificate: enable the server, or set server.cert and server.key")
		}
		c, err := tls.LoadX509KeyPair(cfg.Server.Cert, cfg.Server.Key)
		if err != nil {
			return nil, fmt.Errorf("rtmp.rtmps: %w", err)
		}
		return &tls.Config{Certificates: []tls.Certificate{c}}, nil
	}
}
