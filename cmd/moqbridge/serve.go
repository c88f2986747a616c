package main

import (
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"

	"github.com/spf13/cobra"

	"github.com/moqbridge/moqbridge/protocol"
	"github.com/moqbridge/moqbridge/protocol/auth"
)

func newServeCommand() *cobra.Command {
	var cfg protocol.ServerConfig
	var authKeys []string
	var tcpMode string
	var authPublic string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the MOQ Lite relay (raw QUIC and WebTransport on one UDP port)",
		Args:  cobra.NoArgs,
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
			if len(authKeys) > 0 || cmd.Flags().Changed("auth-public") {
				ac := auth.Config{KeyFiles: authKeys}
				if cmd.Flags().Changed("auth-public") {
					ac.PublicPrefix = &authPublic
				}
				az, err := auth.New(ac)
				if err != nil {
					return fmt.Errorf("--auth-key: %w", err)
				}
				cfg.Auth = az
			}
			srv, err := protocol.NewServer(cfg)
			if err != nil {
				return err
			}
			printConnectInfo(cmd, srv, cfg)
			return srv.Serve(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Addr, "listen", ":4443", "UDP address for QUIC and WebTransport")
	f.StringVar(&cfg.CertFile, "cert", "", "TLS certificate chain (PEM); empty: generate a 13-day self-signed certificate")
	f.StringVar(&cfg.KeyFile, "key", "", "TLS private key (PEM) for --cert")
	f.StringVar(&tcpMode, "tcp", "http", "same port over TCP for /certificate.sha256 and the WebSocket fallback: http, https or off")
	f.StringArrayVar(&cfg.AllowedOrigins, "allow-origin", nil, "browser origin allowed to connect (repeatable; \"*\" for any); default: any with the generated certificate, same-origin only with --cert")
	f.StringArrayVar(&authKeys, "auth-key", nil, "JWT verification key file (JWK, PEM or secret); repeatable; enables auth")
	f.StringVar(&authPublic, "auth-public", "", "path prefix open to clients without a token (\"\" for everything)")
	return cmd
}

// printConnectInfo tells the operator how to reach the relay.
func printConnectInfo(cmd *cobra.Command, srv *protocol.Server, cfg protocol.ServerConfig) {
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
	fmt.Fprintln(out, "press Ctrl-C to stop")
}
