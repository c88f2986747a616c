package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moqbridge/moqbridge/internal/testkit"
)

// jsInteropScript drives a @moq/qmux Session (the WebSocket fallback of
// @moq/lite) against a moqbridge Listener. Arguments: package dir, URL,
// optional application protocol.
const jsInteropScript = `
Promise.withResolvers ??= function () {
	let resolve, reject;
	const promise = new Promise((a, b) => { resolve = a; reject = b; });
	return { promise, resolve, reject };
};
const [, , dir, url, proto] = process.argv;
const { default: Session } = await import("file://" + dir + "/index.js");
const fail = (msg) => { console.error("FAIL " + msg); process.exit(1); };
setTimeout(() => fail("timeout"), 20000);

async function readAll(readable) {
	const chunks = [];
	let n = 0;
	for await (const c of readable) { chunks.push(c); n += c.byteLength; }
	const out = new Uint8Array(n);
	let off = 0;
	for (const c of chunks) { out.set(c, off); off += c.byteLength; }
	return out;
}
const pattern = (n) => { const b = new Uint8Array(n); for (let i = 0; i < n; i++) b[i] = i % 251; return b; };
const SIZE = 3 * 1024 * 1024;

const s = new Session(url, proto ? { protocols: [proto] } : undefined);
await s.ready;
console.log("protocol=" + s.protocol);

// Client bidi: echo.
const bi = await s.createBidirectionalStream();
const bw = bi.writable.getWriter();
await bw.write(new TextEncoder().encode("hel"));
await bw.write(new TextEncoder().encode("lo"));
await bw.close();
const echo = new TextDecoder().decode(await readAll(bi.readable));
if (echo !== "hello") fail("echo " + echo);

// Client uni: 3 MiB, in 64 KiB writes.
const uni = await s.createUnidirectionalStream();
const uw = uni.getWriter();
const big = pattern(SIZE);
for (let off = 0; off < SIZE; off += 65536) await uw.write(big.subarray(off, off + 65536));
await uw.close();

// Server uni: 3 MiB.
const ur = s.incomingUnidirectionalStreams.getReader();
const got = await readAll((await ur.read()).value);
if (got.byteLength !== SIZE || got.some((v, i) => v !== i % 251)) fail("server uni data, " + got.byteLength + " bytes");

// Server bidi: read "srv", answer "cli".
const br = s.incomingBidirectionalStreams.getReader();
const sb = (await br.read()).value;
const sw = sb.writable.getWriter();
const srv = new TextDecoder().decode(await readAll(sb.readable));
if (srv !== "srv") fail("server bidi " + srv);
await sw.write(new TextEncoder().encode("cli"));
await sw.close();

// Server resets a uni stream with code 7 (the polyfill reports the code in the message).
try { await readAll((await ur.read()).value); fail("reset stream read cleanly"); }
catch (e) { if (!String(e).includes("RESET_STREAM: 7")) fail("reset error " + e); }

// Cancel a server stream: STOP_SENDING(0), answered by the server with RESET_STREAM.
const cancelled = (await ur.read()).value;
await cancelled.cancel();

// Wait for the server's go-ahead on one more stream, then close.
const last = await readAll((await ur.read()).value);
if (new TextDecoder().decode(last) !== "close now") fail("last " + last);
s.close({ closeCode: 7, reason: "done" });
await new Promise((r) => setTimeout(r, 300));
console.log("OK");
process.exit(0);
`

// jsPeer finds node and the @moq/qmux 0.0.6 package: $MOQBRIDGE_QMUX_JS,
// else the copy `npm ci` installs in interop/node_modules. When one is
// missing the test is skipped with the reason, or fails if
// MOQBRIDGE_INTEROP=require (as CI sets it), as interop's requireTools does.
func jsPeer(t *testing.T) (node, dir string) {
	t.Helper()
	var missing []string
	node, err := exec.LookPath("node")
	if err != nil {
		missing = append(missing, "node (not in PATH)")
	}
	dir = os.Getenv("MOQBRIDGE_QMUX_JS")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "interop", "node_modules", "@moq", "qmux")
	}
	dir, _ = filepath.Abs(dir)
	if _, err := os.Stat(filepath.Join(dir, "index.js")); err != nil {
		missing = append(missing, fmt.Sprintf("@moq/qmux 0.0.6 (%v; run `npm ci` in interop/ or set MOQBRIDGE_QMUX_JS)", err))
	}
	if len(missing) == 0 {
		return node, dir
	}
	msg := "JS interop peer missing: " + strings.Join(missing, ", ")
	testkit.Unavailable(t, "%s", msg)
	return "", ""
}

func TestJSClientInterop(t *testing.T) {
	node, dir := jsPeer(t)
	script := filepath.Join(t.TempDir(), "interop.mjs")
	if err := os.WriteFile(script, []byte(jsInteropScript), 0o600); err != nil {
		t.Fatal(err)
	}
	ts := startWS(t, TCPHTTP, nil)
	for _, c := range []struct {
		name, proto string
		dialect     qmuxDialect
	}{
		{"legacy", "", dialectLegacy},
		{"qmux-00", "moq-lite-04", dialectQMux00},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			args := []string{"--experimental-websocket", script, dir, ts.wsURL("/room?jwt=x")}
			if c.proto != "" {
				args = append(args, c.proto)
			}
			cmd := exec.CommandContext(ctx, node, args...)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			serr := make(chan error, 1)
			go func() { serr <- jsServerSide(ctx, ts, c.proto, c.dialect) }()
			werr := cmd.Wait()
			if err := <-serr; err != nil {
				t.Errorf("server side: %v", err)
			}
			if werr != nil || !strings.Contains(out.String(), "OK") {
				t.Errorf("node: %v\n%s", werr, out.String())
			}
			t.Logf("node: %s", strings.TrimSpace(out.String()))
		})
	}
}

func jsServerSide(ctx context.Context, ts *testServer, proto string, d qmuxDialect) error {
	sv, err := ts.l.Accept(ctx)
	if err != nil {
		return err
	}
	defer sv.CloseWithError(0, "")
	if sv.Protocol() != proto || sv.(*wsSession).d != d {
		return fmt.Errorf("protocol %q dialect %v", sv.Protocol(), sv.(*wsSession).d)
	}
	if sv.Request().URL.Path != "/room" || sv.Request().URL.Query().Get("jwt") != "x" {
		return fmt.Errorf("request %v", sv.Request().URL)
	}
	const size = 3 << 20
	pattern := make([]byte, size)
	for i := range pattern {
		pattern[i] = byte(i % 251)
	}

	bi, err := sv.AcceptStream(ctx)
	if err != nil {
		return err
	}
	msg, err := io.ReadAll(bi)
	if err != nil || string(msg) != "hello" {
		return fmt.Errorf("bidi read %q, %v", msg, err)
	}
	if _, err := bi.Write(msg); err != nil {
		return err
	}
	_ = bi.Close()

	uni, err := sv.AcceptUniStream(ctx)
	if err != nil {
		return err
	}
	got, err := io.ReadAll(uni)
	if err != nil || !bytes.Equal(got, pattern) {
		return fmt.Errorf("client uni: %d bytes, %v", len(got), err)
	}

	us, err := sv.OpenUniStream(ctx)
	if err != nil {
		return err
	}
	if _, err := us.Write(pattern); err != nil {
		return err
	}
	_ = us.Close()

	sb, err := sv.OpenStream(ctx)
	if err != nil {
		return err
	}
	if _, err := sb.Write([]byte("srv")); err != nil {
		return err
	}
	_ = sb.Close()
	if reply, err := io.ReadAll(sb); err != nil || string(reply) != "cli" {
		return fmt.Errorf("server bidi reply %q, %v", reply, err)
	}

	reset, err := sv.OpenUniStream(ctx)
	if err != nil {
		return err
	}
	_, _ = reset.Write([]byte("partial"))
	reset.CancelWrite(7)

	stopped, err := sv.OpenUniStream(ctx)
	if err != nil {
		return err
	}
	if _, err := stopped.Write([]byte("x")); err != nil {
		return err
	}
	select {
	case <-stopped.Context().Done():
	case <-ctx.Done():
		return errors.New("no STOP_SENDING from the client")
	}
	if cause := context.Cause(stopped.Context()); !isStreamError(cause, 0, true) {
		return fmt.Errorf("stopped stream cause %v", cause)
	}

	last, err := sv.OpenUniStream(ctx)
	if err != nil {
		return err
	}
	_, _ = last.Write([]byte("close now"))
	_ = last.Close()
	_, err = sv.AcceptStream(ctx)
	if !isSessionError(err, 7, "done", true) {
		return fmt.Errorf("after client close: %v", err)
	}
	return nil
}
