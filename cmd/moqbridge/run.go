package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/moqbridge/moqbridge/metrics"
	"github.com/moqbridge/moqbridge/pipelines"
	"github.com/moqbridge/moqbridge/protocol"
)

func newRunCommand() *cobra.Command {
	var file string
	var printDefault bool
	var watch time.Duration
	cmd := &cobra.Command{
		Use:   "run -c FILE",
		Short: "Run the relay, listeners and pipelines of a configuration file, reloading it as it changes",
		Long: `run starts everything a configuration file describes: the built-in relay
("server:"), the shared RTMP listener ("rtmp:"), /metrics, /healthz and
/readyz ("admin:"), and every pipeline, each source and sink supervised on
its own (restarted with backoff when it fails).

The file is reloaded when it changes (checked every --watch) and on SIGHUP:
pipelines that did not change keep running untouched, changed ones restart,
removed ones stop and new ones start. A file with problems is refused (each
problem is logged with its position) and the running set stays. SIGHUP, and
a reload that leaves "server:" as it is, also read server.cert and
server.key again; SIGUSR1 reads only those (sessions keep their
connections). SIGINT or SIGTERM stop gracefully: sources stop, then sinks
finish (recordings close playable); a second one exits at once.

The log level and format come from "log:"; --log-level, when given, wins.
The exit status is 0 after a graceful stop, 1 when the configuration is
invalid or something cannot start (a port taken, a certificate missing).`,
		Example: `  moqbridge run -c moqbridge.yaml
  moqbridge validate -c moqbridge.yaml && kill -HUP $(pidof moqbridge)
  moqbridge run -c - < moqbridge.yaml              # read once from stdin (not reloaded)
  moqbridge run --print-default > moqbridge.yaml   # start from the built-in default`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if printDefault {
				_, err := io.WriteString(cmd.OutOrStdout(), defaultConfig)
				return err
			}
			if file == "" {
				return errors.New(`run needs -c FILE (see "moqbridge run --help"); "moqbridge" alone runs the built-in default`)
			}
			if watch < 0 {
				return fmt.Errorf("--watch %s: must not be negative (0 turns it off)", watch)
			}
			src, err := openConfig(file, cmd.InOrStdin())
			if err != nil {
				return err
			}
			return runConfig(cmd, src, runOptions{watch: watch})
		},
	}
	cmd.Flags().StringVarP(&file, "config", "c", "", "configuration file (YAML); - reads it once from standard input")
	cmd.Flags().DurationVar(&watch, "watch", time.Second, "how often to check the file for changes, which reload it (0: only SIGHUP does)")
	cmd.Flags().BoolVar(&printDefault, "print-default", false, "print the built-in default configuration and exit")
	return cmd
}

// runOptions change how runConfig runs.
type runOptions struct {
	// quickStart prints how to push, record and probe (the built-in
	// default).
	quickStart bool
	// watch is how often a configuration file is checked for changes (0:
	// never).
	watch time.Duration
}

// configRun is a configuration being run: the runner, its metrics and
// admin server, and what a reload compares with.
type configRun struct {
	src     *configSource
	reg     *pipelines.Registry
	log     *slog.Logger
	level   *slog.LevelVar
	flagSet bool // --log-level was given: the configuration's level is ignored
	runner  *pipelines.Runner
	metrics *metrics.Metrics
	admin   *adminServer
	cfg     *pipelines.Config
	// file is what the configuration file was when last read.
	file fileState
}

// runConfig runs the configuration of src until the command's context
// ends (a graceful stop, returning nil) or the runner fails.
func runConfig(cmd *cobra.Command, src *configSource, opts runOptions) error {
	ctx := cmd.Context()
	reg := newRegistry()
	cfg, hash, err := src.load(reg)
	if err != nil {
		if printProblems(cmd, err) == errInvalidConfig {
			n := len(problemLines(err))
			return fmt.Errorf("%s: %d problem%s; nothing started", src.name, n, plural(n))
		}
		return err
	}

	cr := &configRun{src: src, reg: reg, level: new(slog.LevelVar), cfg: cfg, metrics: metrics.New()}
	cr.file.hash = hash
	if src.file != "" {
		cr.file.stat(src.file)
	}
	if f := cmd.Flags().Lookup("log-level"); f != nil && f.Changed {
		cr.flagSet = true
		if err := cr.level.UnmarshalText([]byte(f.Value.String())); err != nil {
			return fmt.Errorf("--log-level: %w", err)
		}
	} else if err := cr.level.UnmarshalText([]byte(cfg.Log.Level)); err != nil {
		return fmt.Errorf("log.level: %w", err)
	}
	handlerOpts := &slog.HandlerOptions{Level: cr.level}
	if cfg.Log.Format == "json" {
		cr.log = slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), handlerOpts))
	} else {
		cr.log = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), handlerOpts))
	}
	slog.SetDefault(cr.log) // for the parts that log without being given a logger

	cr.runner = pipelines.NewRunner(reg, pipelines.RunnerOptions{Logger: cr.log, Observer: cr.metrics})
	// The relay restarts when "server:" changes: read it at every scrape.
	cr.metrics.SetRelay(func() protocol.ServerStats {
		if srv := cr.runner.Server(); srv != nil {
			return srv.Stats()
		}
		return protocol.ServerStats{}
	})
	if cfg.Admin.Listen != "" {
		if cr.admin, err = startAdmin(cfg.Admin.Listen, metrics.Admin(cr.metrics, cr.runner.Ready), cr.log); err != nil {
			return startError(src, opts, err)
		}
	}
	defer func() { cr.admin.close() }()

	// Signals are listened to before anything runs, so that none is lost.
	hup := make(chan os.Signal, 1)
	usr1 := make(chan os.Signal, 1)
	if sigs := reloadSignals(); len(sigs) > 0 {
		signal.Notify(hup, sigs...)
		defer signal.Stop(hup)
	}
	if sigs := certReloadSignals(); len(sigs) > 0 {
		signal.Notify(usr1, sigs...)
		defer signal.Stop(usr1)
	}

	runDone := make(chan error, 1)
	go func() { runDone <- cr.runner.Run(ctx, cfg) }()
	if err := cr.waitStarted(ctx, runDone); err != nil {
		return startError(src, opts, err)
	}
	if ctx.Err() == nil {
		cr.printBanner(cmd.OutOrStdout(), opts.quickStart)
	}

	var tick <-chan time.Time
	if src.file != "" && opts.watch > 0 {
		t := time.NewTicker(opts.watch)
		defer t.Stop()
		tick = t.C
	}
	stopping := ctx.Done()
	for {
		select {
		case err := <-runDone:
			if err != nil {
				return fmt.Errorf("%s: %w", src.name, err)
			}
			cr.log.Info("stopped")
			return nil
		case <-stopping:
			stopping = nil
			cr.log.Info("stopping: sources end, then sinks finish (a second Ctrl-C exits at once)")
		case <-hup:
			cr.reload("SIGHUP", nil)
		case <-usr1:
			cr.reloadCertificate("SIGUSR1")
		case <-tick:
			if data, changed := cr.file.changed(src.file); changed {
				cr.reload("the file changed", data)
			}
		}
	}
}

// startError is the error of a configuration that could not start; for
// the built-in default, whose addresses are fixed, it names the
// environment variable that moves the address at fault.
func startError(src *configSource, opts runOptions, err error) error {
	err = fmt.Errorf("%s: %w", src.name, err)
	if !opts.quickStart {
		return err
	}
	for _, v := range []struct{ prefix, name string }{
		{"admin.listen", "MOQBRIDGE_ADMIN_LISTEN"}, {"server", "MOQBRIDGE_LISTEN"}, {"rtmp", "MOQBRIDGE_RTMP_LISTEN"},
	} {
		if strings.HasPrefix(errors.Unwrap(err).Error(), v.prefix) {
			return fmt.Errorf("%w (set %s=HOST:PORT to use another address)", err, v.name)
		}
	}
	return err
}

// waitStarted waits until the runner listens (the relay and the RTMP
// listeners), or returns the error it failed to start with.
func (cr *configRun) waitStarted(ctx context.Context, runDone <-chan error) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		relayUp := !cr.cfg.Server.Enabled || cr.runner.Server() != nil
		rtmpUp := cr.cfg.RTMP == nil || len(cr.runner.RTMPAddrs()) > 0
		if relayUp && rtmpUp && len(cr.runner.Status()) == len(cr.cfg.Pipelines) {
			return nil
		}
		select {
		case err := <-runDone:
			if err == nil {
				err = errors.New("stopped before it started")
			}
			return err
		case <-ctx.Done():
			return nil // Run stops on its own; the loop reports how
		case <-t.C:
		}
	}
}

// reload loads the configuration again (data, when the caller read it
// already) and applies it: an invalid one is logged, problem by problem,
// and the running one stays.
func (cr *configRun) reload(why string, data []byte) {
	if data == nil {
		var err error
		if data, err = cr.src.read(); err != nil {
			cr.log.Error("configuration not reloaded; the running one stays", "why", why, "err", err)
			return
		}
		cr.file.hash = sha256.Sum256(data)
	}
	cfg, err := cr.src.parse(data, cr.reg)
	if err != nil {
		lines := problemLines(err)
		if lines == nil {
			lines = []string{err.Error()}
		}
		cr.log.Error("configuration not reloaded: it has problems; the running one stays", "why", why, "file", cr.src.name, "problems", len(lines))
		for _, line := range lines {
			cr.log.Error("configuration problem: " + line)
		}
		return
	}
	old := cr.cfg
	changes := compare(old, cfg)
	if err := cr.runner.Reload(cfg); err != nil {
		cr.log.Error("reload: part of the new configuration could not start", "err", err)
	}
	cr.cfg = cfg
	for _, name := range changes.removed {
		cr.metrics.ForgetPipeline(name)
	}
	if !cr.flagSet {
		if err := cr.level.UnmarshalText([]byte(cfg.Log.Level)); err != nil {
			cr.log.Error("reload: log.level", "err", err)
		}
	}
	if cfg.Log.Format != old.Log.Format {
		cr.log.Warn("log.format changes when moqbridge restarts", "format", old.Log.Format)
	}
	if cfg.Admin.Listen != old.Admin.Listen {
		cr.moveAdmin(cfg.Admin.Listen)
	}
	cr.log.Info("configuration reloaded", "why", why, "file", cr.src.name,
		"unchanged", changes.unchanged, "restarted", changes.changed, "started", changes.added, "stopped", changes.removed)
	// A relay that restarted read its certificate anew; one that did not
	// is asked to, so that renewed files are served.
	if !reflect.DeepEqual(old.Server, cfg.Server) {
		if srv := cr.runner.Server(); srv != nil {
			fp := srv.Fingerprint()
			cr.log.Info("the relay restarted", "addr", srv.Addr().String(), "certificate_sha256", fmt.Sprintf("%x", fp[:]))
		}
	} else if cfg.Server.Cert != "" {
		cr.reloadCertificate(why)
	}
}

// reloadCertificate reads server.cert and server.key again.
func (cr *configRun) reloadCertificate(why string) {
	reloadCertificate(cr.runner.Server(), cr.cfg.Server.Cert, why, cr.log)
}

// moveAdmin serves the admin endpoints on a new address, or on none.
func (cr *configRun) moveAdmin(addr string) {
	if addr == "" {
		cr.admin.close()
		cr.admin = nil
		cr.log.Info("admin endpoints off")
		return
	}
	next, err := startAdmin(addr, metrics.Admin(cr.metrics, cr.runner.Ready), cr.log)
	if err != nil {
		cr.log.Error("admin endpoints stay where they are", "err", err)
		return
	}
	cr.admin.close()
	cr.admin = next
}

// changes are the pipelines a reload keeps, restarts, starts and stops.
type changes struct {
	unchanged, changed, added, removed []string
}

func compare(old, cfg *pipelines.Config) changes {
	var c changes
	before := make(map[string]string, len(old.Pipelines))
	for _, p := range old.Pipelines {
		before[p.Name] = p.Fingerprint
	}
	after := make(map[string]bool, len(cfg.Pipelines))
	for _, p := range cfg.Pipelines {
		after[p.Name] = true
		fp, ok := before[p.Name]
		switch {
		case !ok:
			c.added = append(c.added, p.Name)
		case fp == p.Fingerprint:
			c.unchanged = append(c.unchanged, p.Name)
		default:
			c.changed = append(c.changed, p.Name)
		}
	}
	for _, p := range old.Pipelines {
		if !after[p.Name] {
			c.removed = append(c.removed, p.Name)
		}
	}
	return c
}

// fileState is what a configuration file was when last read: a change
// of its modification time or size makes it read again, and a change of
// its content's hash makes a reload (saving a file unchanged does not).
type fileState struct {
	modTime time.Time
	size    int64
	hash    [32]byte
}

// stat records the file's modification time and size.
func (s *fileState) stat(file string) {
	if st, err := os.Stat(file); err == nil {
		s.modTime, s.size = st.ModTime(), st.Size()
	}
}

// changed reports whether the file's content changed since it was last
// read, and returns it then. A file that cannot be read (an editor
// replacing it) is looked at again next time.
func (s *fileState) changed(file string) ([]byte, bool) {
	st, err := os.Stat(file)
	if err != nil || st.ModTime().Equal(s.modTime) && st.Size() == s.size {
		return nil, false
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, false
	}
	s.modTime, s.size = st.ModTime(), st.Size()
	h := sha256.Sum256(data)
	if h == s.hash {
		return nil, false
	}
	s.hash = h
	return data, true
}

// adminServer serves /metrics, /healthz and /readyz.
type adminServer struct {
	addr net.Addr
	srv  *http.Server
	done chan struct{}
}

func startAdmin(addr string, h http.Handler, log *slog.Logger) (*adminServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin.listen: %w", err)
	}
	a := &adminServer{addr: ln.Addr(), done: make(chan struct{}),
		srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}}
	go func() {
		defer close(a.done)
		if err := a.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin endpoints failed", "addr", a.addr.String(), "err", err)
		}
	}()
	log.Info("admin endpoints listening", "addr", a.addr.String())
	return a, nil
}

// close stops the server (a nil one is none) and waits for it.
func (a *adminServer) close() {
	if a == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.srv.Shutdown(ctx); err != nil {
		_ = a.srv.Close()
	}
	<-a.done
}

// printBanner says where everything listens and what each pipeline does;
// quickStart adds how to push, record and probe.
func (cr *configRun) printBanner(out io.Writer, quickStart bool) {
	cfg := cr.cfg
	fmt.Fprintf(out, "moqbridge running %s: %d pipeline%s\n", cr.src.name, len(cfg.Pipelines), plural(len(cfg.Pipelines)))
	relayURL, fingerprint := "", ""
	if srv := cr.runner.Server(); srv != nil {
		addr := srv.Addr()
		hostPort := net.JoinHostPort(displayHost(addr.IP), fmt.Sprint(addr.Port))
		fmt.Fprintf(out, "relay listening on udp %s\n", addr)
		fmt.Fprintf(out, "  WebTransport: https://%s/<path>\n", hostPort)
		fmt.Fprintf(out, "  raw QUIC:     moql://%s\n", hostPort)
		switch cfg.Server.TCP {
		case "http":
			fmt.Fprintf(out, "  WebSocket:    ws://%s/<path>   (dev: http://%s/ fetches the fingerprint)\n", hostPort, hostPort)
			relayURL = "http://" + hostPort + "/"
		case "https":
			fmt.Fprintf(out, "  WebSocket:    wss://%s/<path>\n", hostPort)
		}
		if cfg.Server.Cert == "" {
			fp := srv.Fingerprint()
			fingerprint = fmt.Sprintf("%x", fp[:])
			fmt.Fprintf(out, "  self-signed certificate SHA-256: %s\n", fingerprint)
			fmt.Fprintf(out, "  (browsers: serverCertificateHashes; moqbridge: --fingerprint)\n")
		}
		if relayURL == "" {
			relayURL = "moql://" + hostPort
		}
	} else {
		fmt.Fprintln(out, "relay: off")
	}
	rtmpAddrs := cr.runner.RTMPAddrs()
	for _, a := range rtmpAddrs {
		fmt.Fprintf(out, "rtmp listening on tcp %s\n", a)
	}
	if cr.admin != nil {
		base := "http://" + cr.admin.addr.String()
		fmt.Fprintf(out, "admin: %s/metrics  %s/healthz  %s/readyz\n", base, base, base)
	}
	fmt.Fprintln(out, "pipelines:")
	for _, p := range cfg.Pipelines {
		fmt.Fprintf(out, "  %s\n", pipelineSummary(p))
	}

	if quickStart && relayURL != "" {
		fpFlag := ""
		if !strings.HasPrefix(relayURL, "http://") && fingerprint != "" {
			fpFlag = "--fingerprint " + fingerprint + " "
		}
		fmt.Fprintln(out, "try it:")
		if len(rtmpAddrs) > 0 {
			rtmpHost := rtmpHostPort(rtmpAddrs[0])
			fmt.Fprintf(out, "  OBS:    Settings → Stream → Server rtmp://%s/live, Stream Key KEY → the broadcast live/KEY\n", rtmpHost)
			fmt.Fprintf(out, "  ffmpeg: ffmpeg -re -i INPUT -c:v libx264 -preset veryfast -tune zerolatency -g 60 -bf 0 -c:a aac -f flv rtmp://%s/live/KEY\n", rtmpHost)
		}
		fmt.Fprintf(out, "  record: moqbridge record %s-o recordings %s demo\n", fpFlag, relayURL)
		fmt.Fprintf(out, "  probe:  moqbridge probe %s%s\n", fpFlag, relayURL)
		if strings.HasPrefix(relayURL, "http://") {
			fmt.Fprintf(out, "  list:   curl %sannounced/\n", relayURL)
		}
		fmt.Fprintf(out, "  watch:  a MOQ Lite player (@moq/watch) on the WebTransport URL with the certificate hash above, broadcast demo\n")
		fmt.Fprintf(out, "  a configuration of your own: moqbridge run --print-default > moqbridge.yaml; moqbridge run -c moqbridge.yaml\n")
	}
	fmt.Fprintln(out, "press Ctrl-C to stop")
}

// pipelineSummary is one line saying what a pipeline does: "demo: demo →
// demo", "live: rtmp → live/{key} (live/*)", "archive: from live/* →
// fmp4, moq".
func pipelineSummary(p *pipelines.Pipeline) string {
	var b strings.Builder
	b.WriteString(p.Name + ": ")
	if p.Source != nil {
		b.WriteString(p.Source.Kind.Name + " → " + p.Path)
		if p.Source.Paths != p.Path {
			b.WriteString(" (" + p.Source.Paths + ")")
		}
	} else {
		b.WriteString("from " + p.From)
	}
	if len(p.Sinks) > 0 {
		names := make([]string, len(p.Sinks))
		for i, s := range p.Sinks {
			names[i] = s.Kind.Name
		}
		b.WriteString(" → " + strings.Join(names, ", "))
	}
	return b.String()
}

// displayHost is how the banner names a listening IP: localhost for an
// unspecified one (":4443").
func displayHost(ip net.IP) string {
	if ip == nil || ip.IsUnspecified() {
		return "localhost"
	}
	return ip.String()
}

// rtmpHostPort is an RTMP listener's address as the banner shows it.
func rtmpHostPort(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return net.JoinHostPort(displayHost(net.ParseIP(host)), port)
}
