package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/moqbridge/moqbridge/moq"
	"github.com/moqbridge/moqbridge/protocol"
	"github.com/moqbridge/moqbridge/protocol/auth"
	"github.com/moqbridge/moqbridge/sdk"
	"github.com/moqbridge/moqbridge/sources/rtmp"
)

func newServeCommand() *cobra.Command {
	var cfg protocol.ServerConfig
	var authKeys, authSecrets []string
	var tcpMode string
	var authPublic string
	var budgets struct{ sessions, perAddr, pending int }
	var rtmpOpts rtmpFlags
	var recOpts recordFlags
	var rtpOpts rtpFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the MOQ Lite relay (raw QUIC and WebTransport on one UDP port)",
		Long: `serve runs the MOQ Lite relay configured by flags (a config file's
"server" section; "moqbridge run -c FILE" takes a file): raw QUIC and
WebTransport on one UDP port, WebSocket and the HTTP side on the same TCP
port, with optional RTMP and RTP ingest and a recorder of every broadcast.

With --cert and --key, SIGHUP or SIGUSR1 reads the two files again
(a renewed certificate): sessions keep the certificate they have, new
ones get the new one.`,
		Example: `  moqbridge serve
  moqbridge serve --rtmp :1935 --rtmp-key alice
      # OBS: server rtmp://<host>:1935/live, stream key alice → the broadcast live/alice
  moqbridge serve --cert cert.pem --key key.pem --rtmps :1936 --auth-key jwk.json
      # OBS: server rtmps://<host>:1936/live, stream key alice?jwt=<token allowing put on live/alice>
  moqbridge serve --rtmp :1935 --rtmp-path 'studio/{app}' --rtmp-key 'studio/*=s3cret' --rtmp-replace
  moqbridge serve --rtmp :1935 --record recordings --record-segment 10m
      # every broadcast is also written to recordings/<path>/<start>.mp4 by the relay itself
  moqbridge serve --rtp-sdp cam.sdp --rtp-path live/cam
      # the RTP media cam.sdp describes → the broadcast live/cam; e.g. H.264 + Opus from ffmpeg:
      # ffmpeg -re -f lavfi -i testsrc2=size=1280x720:rate=30 -re -f lavfi -i sine=sample_rate=48000 \
      #   -map 0:v -c:v libx264 -preset veryfast -tune zerolatency -pix_fmt yuv420p -g 30 -bf 0 \
      #     -payload_type 96 -f rtp rtp://127.0.0.1:5004?pkt_size=1200 \
      #   -map 1:a -c:a libopus -ar 48000 -ac 2 -payload_type 111 -f rtp rtp://127.0.0.1:5006?pkt_size=1200 \
      #   -sdp_file cam.sdp
      # (start ffmpeg first: it writes cam.sdp; serve then receives on the ports it names)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Logger = slog.Default()
			switch tcpMode {
			case "http":
				cfg.TCP = protocol.TCPHTTP
			case "https":
				cfg.TCP = protocol.TCPHTTPS
			case "off":
				cfg.TCP = protocol.TCPOff
			default:
				return fmt.Errorf("--tcp: %q is not one of http, https, off", tcpMode)
			}
			if err := rtmpOpts.check(cmd.Flags()); err != nil {
				return err
			}
			if err := recOpts.check(cmd.Flags()); err != nil {
				return err
			}
			if err := rtpOpts.check(cmd.Flags()); err != nil {
				return err
			}
			if len(authKeys) > 0 || len(authSecrets) > 0 || cmd.Flags().Changed("auth-public") {
				ac := auth.Config{KeyFiles: authKeys, SecretFiles: authSecrets}
				if cmd.Flags().Changed("auth-public") {
					ac.PublicPrefix = &authPublic
				}
				az, err := auth.New(ac)
				if err != nil {
					return authFlagError(err)
				}
				cfg.Auth = az
			}
			if cfg.Limits.MaxStreams <= 0 {
				return fmt.Errorf("--max-streams must be positive")
			}
			if cfg.Limits.MaxSessionBuffer > cfg.Limits.MaxServerBuffer {
				return fmt.Errorf("--max-session-buffer (%d) is larger than --max-server-buffer (%d)", cfg.Limits.MaxSessionBuffer, cfg.Limits.MaxServerBuffer)
			}
			if cfg.Liveness.IdleTimeout <= 0 || cfg.Liveness.KeepAlive <= 0 {
				return fmt.Errorf("--idle-timeout and --keep-alive must be positive")
			}
			if cfg.Liveness.KeepAlive >= cfg.Liveness.IdleTimeout {
				return fmt.Errorf("--keep-alive (%v) must be shorter than --idle-timeout (%v)", cfg.Liveness.KeepAlive, cfg.Liveness.IdleTimeout)
			}
			var err error
			if cfg.MaxSessions, err = budgetFlag("max-sessions", budgets.sessions); err != nil {
				return err
			}
			if cfg.MaxSessionsPerAddr, err = budgetFlag("max-sessions-per-addr", budgets.perAddr); err != nil {
				return err
			}
			if cfg.MaxPendingHandshakes, err = budgetFlag("max-pending", budgets.pending); err != nil {
				return err
			}
			if err := rtpOpts.open(cfg.Logger); err != nil {
				return err
			}
			srv, err := protocol.NewServer(cfg)
			if err != nil {
				rtpOpts.close()
				return err
			}
			defer reloadCertificateOnSignals(srv, cfg.CertFile, cfg.Logger)()
			if !rtmpOpts.enabled() && recOpts.cfg.Dir == "" && !rtpOpts.enabled() {
				printConnectInfo(cmd, srv, cfg, &rtmpOpts, nil, &recOpts, &rtpOpts)
				return srv.Serve(cmd.Context())
			}
			var ingests []*rtmp.Server
			if rtmpOpts.enabled() {
				if ingests, err = rtmpOpts.servers(srv, cfg); err != nil {
					rtpOpts.close()
					_ = srv.Close()
					return err
				}
			}
			printConnectInfo(cmd, srv, cfg, &rtmpOpts, ingests, &recOpts, &rtpOpts)
			return serveWith(cmd.Context(), srv, ingests, &recOpts, &rtpOpts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Addr, "listen", ":4443", "UDP address for QUIC and WebTransport")
	f.StringVar(&cfg.CertFile, "cert", "", "TLS certificate chain (PEM); empty: generate a 13-day self-signed certificate")
	f.StringVar(&cfg.KeyFile, "key", "", "TLS private key (PEM) for --cert")
	f.StringVar(&tcpMode, "tcp", "http", "same port over TCP for /certificate.sha256 and the WebSocket fallback: http, https or off")
	f.StringArrayVar(&cfg.AllowedOrigins, "allow-origin", nil, "restrict the browser origins (scheme://host[:port]) that may open WebTransport and WebSocket sessions (repeatable); default: any origin, access is controlled with tokens (--auth-key, --auth-secret)")
	f.DurationVar(&cfg.Liveness.IdleTimeout, "idle-timeout", protocol.DefaultLiveness.IdleTimeout, "end a session whose peer has sent nothing (not even an acknowledgement or pong) for this long; a dead publisher's path goes to its backup then")
	f.DurationVar(&cfg.Liveness.KeepAlive, "keep-alive", protocol.DefaultLiveness.KeepAlive, "send a keep-alive (QUIC PING, WebSocket ping) after this much silence from the peer")
	f.IntVar(&budgets.sessions, "max-sessions", protocol.DefaultMaxSessions, "sessions served at once, all transports; beyond: refused (QUIC: BoundsExceeded, HTTP: 503); 0 for no limit")
	f.IntVar(&budgets.perAddr, "max-sessions-per-addr", protocol.DefaultMaxSessionsPerAddr, "sessions one client IP (IPv6: /64) holds at once; beyond: refused (QUIC: BoundsExceeded, HTTP: 429); 0 for no limit")
	f.IntVar(&cfg.Limits.MaxStreams, "max-streams", protocol.DefaultLimits.MaxStreams, "streams one peer may have open at once, bidirectional and unidirectional each (a peer's further streams wait)")
	cfg.Limits.MaxSessionBuffer = protocol.DefaultLimits.MaxSessionBuffer
	f.Var((*byteSize)(&cfg.Limits.MaxSessionBuffer), "max-session-buffer", "bytes one session may hold for messages and frames still arriving (units KiB, MiB, GiB); a stream going over it is reset with BoundsExceeded")
	cfg.Limits.MaxGroupSize = protocol.DefaultLimits.MaxGroupSize
	f.Var((*byteSize)(&cfg.Limits.MaxGroupSize), "max-group-size", "bytes of one group a publisher may send; a longer group is reset with BoundsExceeded")
	cfg.Limits.MaxServerBuffer = protocol.DefaultLimits.MaxServerBuffer
	f.Var((*byteSize)(&cfg.Limits.MaxServerBuffer), "max-server-buffer", "bytes all sessions together may hold for messages and frames still arriving")
	f.IntVar(&budgets.pending, "max-pending", protocol.DefaultMaxPendingHandshakes, "connections still handshaking (TLS, WebTransport CONNECT, WebSocket upgrade) at once; beyond: refused before the handshake; 0 for no limit")
	f.StringArrayVar(&authKeys, "auth-key", nil, "JWT verification key file: a JWK, JWK set or PEM key (EC P-256/P-384, Ed25519; not a certificate); repeatable; enables auth")
	f.StringArrayVar(&authSecrets, "auth-secret", nil, fmt.Sprintf("raw HMAC secret file: its bytes less trailing newlines, at least %d (HS256; HS384 and HS512 from 48 and 64); repeatable; enables auth", auth.MinSecretSize))
	f.StringVar(&authPublic, "auth-public", "", "path prefix open to clients without a token (\"\" for everything)")
	rtmpOpts.register(f)
	recOpts.register(f)
	rtpOpts.register(f)
	return cmd
}

// serveWith runs the relay, the RTMP and RTP ingests publishing into its
// Origin and the in-process recorder, if any, until ctx ends or one of
// them fails; then all stop (recordings close, what RTMP publishers had
// live ends) before it returns.
func serveWith(ctx context.Context, srv *protocol.Server, ingests []*rtmp.Server, rec *recordFlags, rtpIn *rtpFlags) error {
	var parts []func(context.Context) error
	p := sdk.NewPublisher(srv.Origin(), sdk.PublisherOptions{})
	defer p.Close()
	for _, in := range ingests {
		parts = append(parts, func(ctx context.Context) error { return in.Run(ctx, p) })
	}
	parts = append(parts, rtpIn.parts(srv.Origin(), slog.Default())...)
	if rec.cfg.Dir != "" {
		parts = append(parts, func(ctx context.Context) error { return rec.run(ctx, srv.Origin(), slog.Default()) })
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, len(parts))
	for _, run := range parts {
		go func(ctx context.Context) {
			err := run(ctx)
			cancel() // the relay stops with any part
			done <- err
		}(runCtx)
	}
	err := srv.Serve(runCtx)
	cancel()
	for range parts {
		if perr := <-done; perr != nil && err == nil {
			err = perr
		}
	}
	return err
}

// budgetFlag maps a budget flag to its ServerConfig value: 0 on the command
// line means no limit, which ServerConfig spells negative.
func budgetFlag(name string, v int) (int, error) {
	switch {
	case v < 0:
		return 0, fmt.Errorf("--%s: %d is negative (0 means no limit)", name, v)
	case v == 0:
		return -1, nil
	}
	return v, nil
}

// printConnectInfo tells the operator how to reach the relay.
func printConnectInfo(cmd *cobra.Command, srv *protocol.Server, cfg protocol.ServerConfig, r *rtmpFlags, ingests []*rtmp.Server, rec *recordFlags, rtpIn *rtpFlags) {
	addr := srv.Addr()
	host := "localhost"
	if !addr.IP.IsUnspecified() {
		host = addr.IP.String()
	}
	hostPort := net.JoinHostPort(host, fmt.Sprint(addr.Port))
	fp := srv.Fingerprint()
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "moqbridge relay listening on udp %s\n", addr)
	fmt.Fprintf(out, "  WebTransport: https://%s/<root>\n", hostPort)
	fmt.Fprintf(out, "  raw QUIC:     moql://%s\n", hostPort)
	switch cfg.TCP {
	case protocol.TCPHTTP:
		fmt.Fprintf(out, "  WebSocket:    ws://%s/<root>   (dev: http://%s/<root> fetches the fingerprint)\n", hostPort, hostPort)
	case protocol.TCPHTTPS:
		fmt.Fprintf(out, "  WebSocket:    wss://%s/<root>\n", hostPort)
	}
	if cfg.CertFile == "" {
		fmt.Fprintf(out, "  self-signed certificate SHA-256: %s\n", hex.EncodeToString(fp[:]))
		fmt.Fprintf(out, "  (browsers: serverCertificateHashes; Go: protocol.WithFingerprint)\n")
	}
	for _, line := range authBanner(cfg.Auth) {
		fmt.Fprintln(out, line)
	}
	if len(ingests) > 0 {
		r.printInfo(out, ingests, cfg.Auth != nil)
	}
	rtpIn.printInfo(out)
	if rec.cfg.Dir != "" {
		what := "every broadcast"
		if rec.prefix != "" {
			what = "every broadcast under " + moq.CleanPath(rec.prefix)
		}
		fmt.Fprintf(out, "recording %s to %s (fragmented MP4)\n", what, rec.cfg.Dir)
	}
	fmt.Fprintln(out, "press Ctrl-C to stop")
}

// authBanner says who may connect: anyone (auth off), or who without a
// token (--auth-public) and with a token signed by which keys.
func authBanner(az *auth.Authorizer) []string {
	if az == nil {
		return []string{"  auth: off — anyone may publish and subscribe; --auth-key enables tokens"}
	}
	keys := az.Keys()
	public, open := az.PublicPrefix()
	var access string
	switch {
	case !open:
		access = "a token signed with one of these keys is needed:"
	case public == "" && len(keys) > 0:
		access = `without a token: publish and subscribe anywhere (--auth-public ""); a token given must be signed with one of these keys:`
	case public == "":
		access = `without a token: publish and subscribe anywhere (--auth-public ""); no --auth-key, so any token is refused`
	case len(keys) > 0:
		access = fmt.Sprintf("without a token: publish and subscribe under %q only (--auth-public); elsewhere a token signed with one of these keys:", public)
	default:
		access = fmt.Sprintf("without a token: publish and subscribe under %q only (--auth-public); no --auth-key, so nothing else is reachable", public)
	}
	lines := []string{"  auth: on — " + access}
	for _, k := range keys {
		line := fmt.Sprintf("    %s: %s, %s", k.File, k.Format, strings.Join(k.Algs, "/"))
		if k.Kid != "" {
			line += fmt.Sprintf(", kid %q", k.Kid)
		}
		if k.Private {
			line += ", private key (the relay needs only its public half)"
		}
		lines = append(lines, line)
	}
	return lines
}

// authFlagError names the flag and file of an unusable key or secret file,
// and says which flag the file belongs to when it is the other kind.
func authFlagError(err error) error {
	var kfe *auth.KeyFileError
	if !errors.As(err, &kfe) {
		return fmt.Errorf("--auth-key: %w", err)
	}
	flag := "--auth-key"
	if kfe.Secret {
		flag = "--auth-secret"
	}
	msg := fmt.Sprintf("%s %s: %v", flag, kfe.File, kfe.Err)
	switch {
	case errors.Is(kfe.Err, auth.ErrNotAKey):
		msg += "; if it is a raw HMAC secret, pass it as --auth-secret " + kfe.File
	case errors.Is(kfe.Err, auth.ErrNotASecret):
		if _, err := auth.New(auth.Config{KeyFiles: []string{kfe.File}}); err == nil {
			msg += "; pass it as --auth-key " + kfe.File
		}
	}
	return errors.New(msg)
}

// byteSize is a flag value in bytes, written as a number with an optional
// binary unit: 1048576, 1024KiB, 64MiB, 1GiB (K, M and G mean the same).
type byteSize int

var byteUnits = []struct {
	suffix string
	mult   int64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30},
	{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"b", 1},
}

func (b *byteSize) String() string {
	n := int64(*b)
	for _, u := range []struct {
		name string
		mult int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.mult && n%u.mult == 0 {
			return fmt.Sprintf("%d%s", n/u.mult, u.name)
		}
	}
	return strconv.FormatInt(n, 10)
}

func (b *byteSize) Set(s string) error {
	num, mult := strings.ToLower(strings.TrimSpace(s)), int64(1)
	for _, u := range byteUnits {
		if rest, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > math.MaxInt/mult {
		return fmt.Errorf("want a positive size such as 64MiB, got %q", s)
	}
	*b = byteSize(n * mult)
	return nil
}

func (b *byteSize) Type() string { return "size" }
