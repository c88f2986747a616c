package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/internal/testkit"
)

// startWithBanner runs the moqbridge binary with args and the extra
// environment variables env, and waits for its banner, up to "press
// Ctrl-C to stop", which it returns.
func startWithBanner(t *testing.T, ctx context.Context, env []string, args ...string) (*process, string) {
	t.Helper()
	p := &process{cmd: exec.CommandContext(ctx, moqbridgeBinary(t), args...), done: make(chan error, 1)}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stderr = &p.stderr
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	banner := make(chan string, 1)
	go func() {
		var b strings.Builder
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			b.WriteString(sc.Text() + "\n")
			if strings.HasPrefix(sc.Text(), "press Ctrl-C") {
				banner <- b.String()
				break
			}
		}
		close(banner)
		_, _ = io.Copy(io.Discard, out)
	}()
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	select {
	case text, ok := <-banner:
		if !ok {
			t.Fatalf("moqbridge %q printed no banner; stderr:\n%s", args, p.stderr.String())
		}
		return p, text
	case <-ctx.Done():
		t.Fatalf("moqbridge %q printed no banner in time; stderr:\n%s", args, p.stderr.String())
		return nil, ""
	}
}

// httpGet returns the status and body of a GET of url.
func httpGet(ctx context.Context, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// recordings returns the .mp4 files under dir.
func recordings(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".mp4") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func fileSize(name string) int64 {
	st, err := os.Stat(name)
	if err != nil {
		return -1
	}
	return st.Size()
}

// TestDefaultConfig runs the binary without arguments, its ports moved by
// the environment, as a user would on a fresh clone: the banner says where
// everything is; /readyz turns ready once demo is up and /metrics has
// moqbridge's series; "moqbridge probe" reports demo's tracks and
// "moqbridge record" of demo in another process writes a clean fMP4; ffmpeg pushing RTMP to live/x makes the broadcast live/x;
// SIGINT stops it with status 0.
func TestDefaultConfig(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	relayPort, rtmpPort, adminPort := freePort(t), freePort(t), freePort(t)
	relay := fmt.Sprintf("127.0.0.1:%d", relayPort)
	rtmpAddr := fmt.Sprintf("127.0.0.1:%d", rtmpPort)
	admin := fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	p, banner := startWithBanner(t, ctx, []string{
		"MOQBRIDGE_LISTEN=" + relay,
		"MOQBRIDGE_RTMP_LISTEN=" + rtmpAddr,
		fmt.Sprintf("MOQBRIDGE_ADMIN_LISTEN=127.0.0.1:%d", adminPort),
	})

	for _, want := range []string{
		"moqbridge running " + defaultConfigName + ": 2 pipelines\n",
		"relay listening on udp " + relay + "\n",
		"  raw QUIC:     moql://" + relay + "\n",
		"rtmp listening on tcp " + rtmpAddr + "\n",
		"admin: " + admin + "/metrics  " + admin + "/healthz  " + admin + "/readyz\n",
		"  live: rtmp → live/{key} (live/*)\n",
		"  demo: demo → demo\n",
		"Server rtmp://" + rtmpAddr + "/live, Stream Key KEY → the broadcast live/KEY\n",
		" -f flv rtmp://" + rtmpAddr + "/live/KEY\n",
		"  record: moqbridge record -o recordings http://" + relay + "/ demo\n",
		"  probe:  moqbridge probe http://" + relay + "/\n",
	} {
		if !strings.Contains(banner, want) {
			t.Errorf("the banner lacks %q:\n%s", want, banner)
		}
	}
	if !regexp.MustCompile(`self-signed certificate SHA-256: [0-9a-f]{64}\n`).MatchString(banner) {
		t.Errorf("the banner has no certificate fingerprint:\n%s", banner)
	}

	// Ready once demo is up; the metrics name it.
	waitFor(t, ctx, "/readyz to answer 200", func() bool {
		code, _, _ := httpGet(ctx, admin+"/readyz")
		return code == http.StatusOK
	})
	code, metricsText, err := httpGet(ctx, admin+"/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /metrics: %d, %v", code, err)
	}
	for _, want := range []string{`moqbridge_source_up{pipeline="demo"} 1`, `moqbridge_relay_broadcasts `, `moqbridge_source_frames_total{path="demo",pipeline="demo",track="video0"} `} {
		if !strings.Contains(metricsText, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// Probe it, as the banner says: demo's tracks.
	probe := startProcess(t, ctx, "probe", "--duration", "1s", "http://"+relay+"/", "demo")
	if code := probe.wait(t, ctx, "probe"); code != 0 {
		t.Fatalf("probe exited %d:\n%s", code, probe.stderr.String())
	}
	for _, want := range []string{"broadcast demo\n", "video  avc1.64001f  640x360 30 fps", "audio  mp4a.40.2    48000 Hz 1 ch"} {
		if !strings.Contains(probe.stdout.String(), want) {
			t.Errorf("probe of demo lacks %q:\n%s", want, probe.stdout.String())
		}
	}

	// Record demo from another process, as the banner says.
	dir := t.TempDir()
	rec := startProcess(t, ctx, "record", "--duration", "3s", "-o", dir, "http://"+relay+"/", "demo")
	if code := rec.wait(t, ctx, "record"); code != 0 {
		t.Fatalf("record exited %d:\n%s", code, rec.stderr.String())
	}
	files := strings.Fields(rec.stdout.String())
	if len(files) != 1 || fileSize(files[0]) < 50_000 {
		t.Fatalf("record printed %q, want one file of a few seconds", files)
	}
	if testkit.CheckWith("ffprobe", "ffmpeg") {
		testkit.NeedFFmpeg(t)
		v := testkit.CheckFMP4(t, files[0], "v:0")
		a := testkit.CheckFMP4(t, files[0], "a:0")
		if v.Keyframes < 2 || v.Decoded < 45 || a.Packets < 70 {
			t.Errorf("%s: %+v video, %+v audio; want 2 s of demo or more (3 s from a keyframe)", files[0], v, a)
		}
	} else {
		t.Log("ffprobe not found: the recording is not judged")
	}

	// RTMP to live/x is the broadcast live/x.
	if testkit.CheckWith("ffmpeg") {
		testkit.NeedTools(t, "ffmpeg")
		pushCtx, stopPush := context.WithCancel(ctx)
		push := exec.CommandContext(pushCtx, "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
			"-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
			"-t", "60", "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-g", "30", "-bf", "0", "-c:a", "aac",
			"-f", "flv", "rtmp://"+rtmpAddr+"/live/x")
		if err := push.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, ctx, "live/x in GET /announced/live", func() bool {
			_, body, _ := httpGet(ctx, "http://"+relay+"/announced/live")
			for line := range strings.Lines(body) {
				if l := strings.TrimSpace(line); l == "x" || l == "live/x" {
					return true
				}
			}
			return false
		})
		stopPush()
		_ = push.Wait()
	} else {
		t.Log("ffmpeg not found: RTMP ingest is not tried")
	}

	_ = p.cmd.Process.Signal(os.Interrupt)
	if code := p.wait(t, ctx, "moqbridge"); code != 0 {
		t.Fatalf("moqbridge exited %d after SIGINT:\n%s", code, p.stderr.String())
	}
	if !strings.Contains(p.stderr.String(), "msg=stopped") {
		t.Errorf("the log does not say it stopped:\n%s", p.stderr.String())
	}
}

// reloadConfig is a configuration of two pipelines recording the demo
// clip, a's into DIR/a and b's into DIR/B.
const reloadConfig = `server: {listen: "127.0.0.1:PORT", tcp: "off"}
admin: {listen: ""}
pipelines:
  a:
    source: demo
    path: a
    sinks: [fmp4: {dir: "DIR/a"}]
  b:
    source: demo
    path: b
    sinks: [fmp4: {dir: "DIR/B"}]
`

// TestRunReload runs "moqbridge run -c FILE" (watching off) and edits the
// file: after SIGHUP, b (its recording directory changed) restarts and
// records into its new directory while a runs untouched, its one
// recording file growing on; an invalid edit and SIGHUP log each problem
// with its position and change nothing; SIGTERM stops it with status 0,
// a's recording whole.
func TestRunReload(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	dir := t.TempDir()
	port := freePort(t)
	config := func(b string) string {
		return strings.NewReplacer("PORT", fmt.Sprint(port), "DIR", dir, "B", b).Replace(reloadConfig)
	}
	file := writeTestFile(t, dir, "moqbridge.yaml", []byte(config("b1")))
	p, banner := startWithBanner(t, ctx, nil, "run", "-c", file, "--watch", "0")
	if !strings.Contains(banner, "  a: demo → a → fmp4\n") || !strings.Contains(banner, "  b: demo → b → fmp4\n") {
		t.Errorf("the banner does not summarise the pipelines:\n%s", banner)
	}
	aDir := filepath.Join(dir, "a")
	var aFile string
	waitFor(t, ctx, "a's recording", func() bool {
		files := recordings(t, aDir)
		if len(files) == 1 && fileSize(files[0]) > 20_000 {
			aFile = files[0]
			return true
		}
		return false
	})
	waitFor(t, ctx, "b's recording", func() bool { return len(recordings(t, filepath.Join(dir, "b1"))) == 1 })

	// A valid edit of b.
	writeTestFile(t, dir, "moqbridge.yaml", []byte(config("b2")))
	before := fileSize(aFile)
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	p.stderr.WaitLog(t, 30*time.Second, `msg="configuration reloaded"`, `why=SIGHUP`, "unchanged=[a]", "restarted=[b]", "started=[]", "stopped=[]")
	waitFor(t, ctx, "b's recording in its new directory", func() bool { return len(recordings(t, filepath.Join(dir, "b2"))) == 1 })
	waitFor(t, ctx, "a's recording to grow", func() bool { return fileSize(aFile) > before+20_000 })
	if files := recordings(t, aDir); len(files) != 1 || files[0] != aFile {
		t.Fatalf("a's recordings after the reload: %q, want %s alone", files, aFile)
	}

	// An invalid edit: the problems are logged, nothing changes.
	broken := strings.Replace(config("b3"), "    sinks: [fmp4: {dir: \""+dir+"/a\"}]", "    sinkz: [fmp4: {dir: \""+dir+"/a\"}]", 1)
	broken = strings.Replace(broken, "path: b\n", "path: b\n    restart: {min: soon}\n", 1)
	writeTestFile(t, dir, "moqbridge.yaml", []byte(broken))
	before = fileSize(aFile)
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	p.stderr.WaitLog(t, 30*time.Second, `msg="configuration not reloaded: it has problems; the running one stays"`, "problems=2")
	for _, want := range []string{
		file + `:7:5: pipelines.a.sinkz: unknown key \"sinkz\" (did you mean \"sinks\"?)`,
		file + `:11:20: pipelines.b.restart.min: expected a duration like 10s, got \"soon\"`,
	} {
		p.stderr.WaitLog(t, 10*time.Second, "configuration problem: "+want)
	}
	waitFor(t, ctx, "a's recording to grow", func() bool { return fileSize(aFile) > before+20_000 })
	if files := recordings(t, aDir); len(files) != 1 || files[0] != aFile {
		t.Errorf("a's recordings after the invalid edit: %q, want %s alone", files, aFile)
	}
	if files := recordings(t, filepath.Join(dir, "b3")); len(files) != 0 {
		t.Errorf("the invalid edit started b: %q", files)
	}

	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, ctx, "moqbridge run"); code != 0 {
		t.Fatalf("moqbridge run exited %d after SIGTERM:\n%s", code, p.stderr.String())
	}
	if testkit.CheckWith("ffprobe", "ffmpeg") {
		testkit.NeedFFmpeg(t)
		if v := testkit.CheckFMP4(t, aFile, "v:0"); v.Keyframes < 4 {
			t.Errorf("%s: %+v, want a recording across both reloads", aFile, v)
		}
	}
}

// TestRunWatchesFile runs "run -c" in process, watching the file: adding
// a pipeline to the file starts it and its metrics appear, removing it
// stops it and its series go; cancelling the context stops with status 0.
func TestRunWatchesFile(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	adminPort := freePort(t)
	admin := fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	one := fmt.Sprintf("server: {enabled: false}\nadmin: {listen: \"127.0.0.1:%d\"}\npipelines:\n  one: {source: demo, path: one}\n", adminPort)
	two := one + "  two: {source: demo, path: two}\n"
	file := writeTestFile(t, dir, "moqbridge.yaml", []byte(one))

	var stdout, stderr testkit.LogBuffer
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan int, 1)
	go func() {
		done <- run(runCtx, []string{"--log-level", "info", "run", "-c", file, "--watch", "50ms"}, &stdout, &stderr)
	}()
	defer func() {
		stop()
		if code := <-done; code != 0 {
			t.Errorf("run exited %d:\n%s", code, stderr.String())
		}
	}()
	stdoutLine := func(want string) {
		t.Helper()
		stdout.WaitLog(t, 20*time.Second, want)
	}
	stdoutLine("press Ctrl-C to stop")
	waitFor(t, ctx, "/readyz to answer 200", func() bool {
		code, _, _ := httpGet(ctx, admin+"/readyz")
		return code == http.StatusOK
	})

	writeTestFile(t, dir, "moqbridge.yaml", []byte(two))
	stderr.WaitLog(t, 20*time.Second, `msg="configuration reloaded"`, `why="the file changed"`, "unchanged=[one]", "started=[two]")
	waitFor(t, ctx, "two's series in /metrics", func() bool {
		_, text, _ := httpGet(ctx, admin+"/metrics")
		return strings.Contains(text, `moqbridge_source_up{pipeline="two"} 1`)
	})

	writeTestFile(t, dir, "moqbridge.yaml", []byte(one))
	stderr.WaitLog(t, 20*time.Second, `msg="configuration reloaded"`, "unchanged=[one]", "stopped=[two]")
	_, text, _ := httpGet(ctx, admin+"/metrics")
	if strings.Contains(text, `pipeline="two"`) {
		t.Errorf("/metrics still has series of the removed pipeline two")
	}
	if !strings.Contains(text, `moqbridge_source_up{pipeline="one"} 1`) {
		t.Errorf("/metrics lost the series of pipeline one")
	}
}

// writeCertificate writes a new self-signed P-256 certificate and its key
// as PEM files and returns the certificate's SHA-256 in hex.
func writeCertificate(t *testing.T, certFile, keyFile string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// servedCertificate is the SHA-256 of the certificate the relay on port
// of loopback serves (its /certificate.sha256), "" when it does not
// answer.
func servedCertificate(ctx context.Context, port int) string {
	_, body, _ := httpGet(ctx, fmt.Sprintf("http://127.0.0.1:%d/certificate.sha256", port))
	return strings.TrimSpace(body)
}

// TestRunReloadsCertificate: with server.cert and server.key, SIGUSR1
// makes the relay serve the files' new certificate, and so does SIGHUP
// with the configuration unchanged, without restarting the relay
// (/certificate.sha256 follows).
func TestRunReloadsCertificate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := writeCertificate(t, certFile, keyFile)
	port := freePort(t)
	file := writeTestFile(t, dir, "moqbridge.yaml", []byte(fmt.Sprintf(
		"server: {listen: \"127.0.0.1:%d\", cert: %s, key: %s}\nadmin: {listen: \"\"}\npipelines:\n  demo: {source: demo, path: demo}\n", port, certFile, keyFile)))
	p, _ := startWithBanner(t, ctx, nil, "run", "-c", file, "--watch", "0")
	served := func() string { return servedCertificate(ctx, port) }
	if got := served(); got != first {
		t.Fatalf("/certificate.sha256 is %q, want the file's %s", got, first)
	}
	for i, sig := range []syscall.Signal{syscall.SIGUSR1, syscall.SIGHUP} {
		next := writeCertificate(t, certFile, keyFile)
		_ = p.cmd.Process.Signal(sig)
		waitFor(t, ctx, fmt.Sprintf("the new certificate after %v", sig), func() bool { return served() == next })
		// The reload is logged after the new certificate is in place, so
		// the line may come a moment after the served hash changes.
		reloads := func() int { return strings.Count(p.stderr.String(), `msg="moq certificate reloaded"`) }
		waitFor(t, ctx, fmt.Sprintf("the reload log line after %v", sig), func() bool { return reloads() >= i+1 })
		if n := reloads(); n != i+1 {
			t.Errorf("after %v: %d certificate reloads logged, want %d", sig, n, i+1)
		}
	}
	if strings.Contains(p.stderr.String(), "restarting the relay") {
		t.Errorf("the relay restarted:\n%s", p.stderr.String())
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, ctx, "moqbridge run"); code != 0 {
		t.Fatalf("moqbridge run exited %d:\n%s", code, p.stderr.String())
	}
}

// TestDefaultConfigPortTaken: the built-in default whose admin port is
// taken does not start (status 1) and says which variable moves it.
func TestDefaultConfigPortTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	t.Setenv("MOQBRIDGE_LISTEN", fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	t.Setenv("MOQBRIDGE_RTMP_LISTEN", "127.0.0.1:0")
	t.Setenv("MOQBRIDGE_ADMIN_LISTEN", taken.Addr().String())
	code, stdout, stderr := runCLI(t, testkit.Context(t, 30*time.Second))
	want := "moqbridge: " + defaultConfigName + ": admin.listen: listen tcp " + taken.Addr().String() +
		": bind: address already in use (set MOQBRIDGE_ADMIN_LISTEN=HOST:PORT to use another address)\n"
	if code != 1 || stdout != "" || stderr != want {
		t.Errorf("exit %d, stdout %q, stderr %q; want exit 1 and %q", code, stdout, stderr, want)
	}
}

// TestSecondSignalExits: a second SIGINT during a graceful stop exits at
// once with status 1. The stop is held up by an rtmp sink whose receiver
// accepted the connection and never answers the handshake, which the
// graceful stop waits for.
func TestSecondSignalExits(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	receiver, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer receiver.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := receiver.Accept(); err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	dir := t.TempDir()
	file := writeTestFile(t, dir, "moqbridge.yaml", []byte(fmt.Sprintf(`server: {enabled: false}
admin: {listen: ""}
pipelines:
  demo:
    source: demo
    path: demo
    sinks: [rtmp: {url: "rtmp://%s/live/x"}]
`, receiver.Addr())))
	p, _ := startWithBanner(t, ctx, nil, "run", "-c", file)
	select {
	case c := <-accepted:
		defer c.Close()
	case <-ctx.Done():
		t.Fatalf("the rtmp sink did not connect:\n%s", p.stderr.String())
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	p.stderr.WaitLog(t, 20*time.Second, "msg=\"stopping: sources end, then sinks finish")
	if strings.Contains(p.stderr.String(), "msg=stopped") {
		t.Fatalf("the stop did not wait for the sink:\n%s", p.stderr.String())
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	if code := p.wait(t, ctx, "moqbridge run"); code != 1 {
		t.Errorf("exit status %d after a second SIGINT, want 1", code)
	}
	log := p.stderr.String()
	if !strings.Contains(log, "moqbridge: interrupt again: exiting without waiting for the graceful stop\n") || strings.Contains(log, "msg=stopped") {
		t.Errorf("the second SIGINT did not cut the stop short:\n%s", log)
	}
}
