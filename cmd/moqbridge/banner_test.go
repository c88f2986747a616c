package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// An Ed25519 key pair with a fixed kid (moq-token's interop fixture), so
// that banners naming it are the same on every run.
const (
	edPublicJWK  = `{"alg":"EdDSA","key_ops":["verify"],"kty":"OKP","crv":"Ed25519","x":"S9n3tEG677fSNpa0Ftf46OPBte5y1pTwvm4fPkEw_Z8","kid":"dfab9113ea85dc27"}`
	edPrivateJWK = `{"alg":"EdDSA","key_ops":["sign","verify"],"kty":"OKP","crv":"Ed25519","x":"S9n3tEG677fSNpa0Ftf46OPBte5y1pTwvm4fPkEw_Z8","d":"EhFsuE3CFkJoQpZCT2Wwr6YF7ZwjsaEIgbwO4Uc4b5U","kid":"dfab9113ea85dc27"}`
)

// bannerHead is what serve prints before the auth line, with the port and
// fingerprint replaced (see serveBanner).
const bannerHead = `moqbridge relay listening on udp 127.0.0.1:PORT
  WebTransport: https://127.0.0.1:PORT/<root>
  raw QUIC:     moql://127.0.0.1:PORT
  WebSocket:    ws://127.0.0.1:PORT/<root>   (dev: http://127.0.0.1:PORT/<root> fetches the fingerprint)
  self-signed certificate SHA-256: FINGERPRINT
  (browsers: serverCertificateHashes; Go: protocol.WithFingerprint)
`

var (
	portRe        = regexp.MustCompile(`127\.0\.0\.1:[0-9]+`)
	fingerprintRe = regexp.MustCompile(`\b[0-9a-f]{64}\b`)
)

// serveBanner runs "moqbridge serve" on 127.0.0.1:0 with args, reads what
// it prints up to "press Ctrl-C to stop", stops it by cancelling its
// context and returns the banner with the port replaced by PORT, the
// certificate fingerprint by FINGERPRINT and dir by DIR.
func serveBanner(t *testing.T, dir string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pr, pw := io.Pipe()
	var stderr strings.Builder
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, append([]string{"serve", "--log-level", "error", "--listen", "127.0.0.1:0"}, args...), pw, &stderr)
		_ = pw.Close()
	}()
	var banner strings.Builder
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		banner.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), "Ctrl-C") {
			break
		}
	}
	cancel()
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if code := <-done; code != 0 {
		t.Fatalf("serve %q exited %d: %s", args, code, stderr.String())
	}
	out := portRe.ReplaceAllString(banner.String(), "127.0.0.1:PORT")
	out = fingerprintRe.ReplaceAllString(out, "FINGERPRINT")
	return strings.ReplaceAll(out, dir, "DIR")
}

func writeTestFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// testCertificate returns a new self-signed P-256 certificate and the PEM
// public key of its key.
func testCertificate(t *testing.T) (certPEM, pubPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "relay.example"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})
}

// TestServeBanner: the banner says whether auth is on, who may connect
// without a token, and each key loaded (file, format, algorithms, kid).
func TestServeBanner(t *testing.T) {
	dir := t.TempDir()
	pub := writeTestFile(t, dir, "relay.pub.jwk", []byte(edPublicJWK))
	priv := writeTestFile(t, dir, "relay.jwk", []byte(edPrivateJWK+"\n"))
	_, ecPub := testCertificate(t)
	pemFile := writeTestFile(t, dir, "relay.pub.pem", ecPub)
	secret := writeTestFile(t, dir, "hmac.key", []byte(strings.Repeat("0123456789abcdef", 3)+"\n")) // 48 bytes
	for _, c := range []struct {
		name string
		args []string
		auth string
	}{
		{"off", nil,
			"  auth: off — anyone may publish and subscribe; --auth-key enables tokens\n"},
		{"JWK", []string{"--auth-key", pub},
			"  auth: on — a token signed with one of these keys is needed:\n" +
				`    DIR/relay.pub.jwk: JWK, EdDSA, kid "dfab9113ea85dc27"` + "\n"},
		{"private JWK", []string{"--auth-key", priv},
			"  auth: on — a token signed with one of these keys is needed:\n" +
				`    DIR/relay.jwk: JWK, EdDSA, kid "dfab9113ea85dc27", private key (the relay needs only its public half)` + "\n"},
		{"PEM", []string{"--auth-key", pemFile},
			"  auth: on — a token signed with one of these keys is needed:\n" +
				"    DIR/relay.pub.pem: PEM, ES256\n"},
		{"secret", []string{"--auth-secret", secret},
			"  auth: on — a token signed with one of these keys is needed:\n" +
				"    DIR/hmac.key: secret, HS256/HS384\n"},
		{"keys and public prefix", []string{"--auth-secret", secret, "--auth-key", pub, "--auth-public", "/demo/"},
			`  auth: on — without a token: publish and subscribe under "demo" only (--auth-public); elsewhere a token signed with one of these keys:` + "\n" +
				`    DIR/relay.pub.jwk: JWK, EdDSA, kid "dfab9113ea85dc27"` + "\n" +
				"    DIR/hmac.key: secret, HS256/HS384\n"},
		{"key and everything public", []string{"--auth-key", pemFile, "--auth-public", ""},
			`  auth: on — without a token: publish and subscribe anywhere (--auth-public ""); a token given must be signed with one of these keys:` + "\n" +
				"    DIR/relay.pub.pem: PEM, ES256\n"},
		{"public prefix only", []string{"--auth-public", "demo"},
			`  auth: on — without a token: publish and subscribe under "demo" only (--auth-public); no --auth-key, so nothing else is reachable` + "\n"},
		{"everything public", []string{"--auth-public", ""},
			`  auth: on — without a token: publish and subscribe anywhere (--auth-public ""); no --auth-key, so any token is refused` + "\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			want := bannerHead + c.auth + "press Ctrl-C to stop\n"
			if got := serveBanner(t, dir, c.args...); got != want {
				t.Errorf("serve %q printed\n%s\nwant\n%s", c.args, got, want)
			}
		})
	}
}

// TestServeRefusesKeyFiles: a key file that is not a JWK or PEM key, and
// a secret file that is not a usable raw secret, stop serve before it
// listens, with an error that names the flag, the file and what it looks
// like, and the flag it belongs to when it is the other kind.
func TestServeRefusesKeyFiles(t *testing.T) {
	dir := t.TempDir()
	cert, ecPub := testCertificate(t)
	certFile := writeTestFile(t, dir, "cert.pem", cert)
	pemFile := writeTestFile(t, dir, "relay.pub.pem", ecPub)
	jwkFile := writeTestFile(t, dir, "relay.jwk", []byte(edPrivateJWK))
	secret := writeTestFile(t, dir, "hmac.key", []byte(strings.Repeat("0123456789abcdef", 2)+"\n"))
	config := writeTestFile(t, dir, "config.json", []byte(`{"listen":":4443","tcp":"http"}`))
	empty := writeTestFile(t, dir, "empty.jwk", nil)
	notes := writeTestFile(t, dir, "notes.txt", []byte("relay keys\nsee the wiki\n"))
	binary := writeTestFile(t, dir, "random.bin", []byte{0xde, 0xad, 0xbe, 0xef, 0xff, 0x00})
	short := writeTestFile(t, dir, "short.key", []byte("hunter2\n"))
	missing := filepath.Join(dir, "nope.jwk")

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--auth-key", secret},
			"--auth-key " + secret + ": not a JWK or PEM key; if it is a raw HMAC secret, pass it as --auth-secret " + secret},
		{[]string{"--auth-key", certFile},
			"--auth-key " + certFile + ": a certificate, not a key; to verify tokens signed with its key, pass its public key (openssl x509 -pubkey -noout -in " + certFile + ")"},
		{[]string{"--auth-key", config},
			"--auth-key " + config + `: JSON, but not a JWK or JWK set (no "kty" or "keys" member)`},
		{[]string{"--auth-key", empty},
			"--auth-key " + empty + ": the file is empty"},
		{[]string{"--auth-key", notes},
			"--auth-key " + notes + ": 2 lines of text, not a JWK or PEM key; if it is a raw HMAC secret, pass it as --auth-secret " + notes},
		{[]string{"--auth-key", binary},
			"--auth-key " + binary + ": binary data, not a JWK or PEM key; if it is a raw HMAC secret, pass it as --auth-secret " + binary},
		{[]string{"--auth-key", missing},
			"--auth-key " + missing + ": no such file or directory"},
		{[]string{"--auth-key", pemFile, "--auth-key", dir},
			"--auth-key " + dir + ": is a directory"},
		{[]string{"--auth-secret", short},
			"--auth-secret " + short + ": the secret is 7 bytes; HMAC needs at least 32 (RFC 7518 §3.2): make one with openssl rand -hex 32 > " + short},
		{[]string{"--auth-secret", jwkFile},
			"--auth-secret " + jwkFile + ": a JWK, not a raw secret; pass it as --auth-key " + jwkFile},
		{[]string{"--auth-secret", pemFile},
			"--auth-secret " + pemFile + ": a PEM key, not a raw secret; pass it as --auth-key " + pemFile},
		{[]string{"--auth-secret", certFile},
			"--auth-secret " + certFile + ": PEM text, not a raw secret"},
		{[]string{"--auth-secret", config},
			"--auth-secret " + config + ": JSON, not a raw secret"},
	} {
		wantError(t, "moqbridge: "+c.want, append([]string{"serve", "--listen", "127.0.0.1:0"}, c.args...)...)
	}
}
