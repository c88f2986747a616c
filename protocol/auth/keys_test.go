package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestNewErrors(t *testing.T) {
	b64 := base64.RawURLEncoding.EncodeToString
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherEC, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	point, _ := ecKey.PublicKey.Bytes()
	x, y := b64(point[1:33]), b64(point[33:])
	d, _ := otherEC.Bytes()
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 1024)
	der := func(b []byte, err error) []byte {
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	_, otherEd, _ := ed25519.GenerateKey(rand.Reader)
	k32 := b64(make([]byte, 32))
	cert := selfSigned(t)

	cases := []struct {
		name, content, want string
	}{
		{"empty", "\n \n", "file is empty"},
		{"newlines only secret", "\r\n", "file is empty"},
		{"bad JSON", `{"kty":"oct",`, "invalid JSON"},
		{"no kty", `{"alg":"HS256"}`, `missing "kty"`},
		{"oct without k", `{"kty":"oct"}`, `oct key without "k"`},
		{"oct bad base64", `{"kty":"oct","k":"!!"}`, "not base64url"},
		{"oct wrong alg", `{"kty":"oct","k":"c2VjcmV0","alg":"ES256"}`, `alg "ES256" does not fit an oct key`},
		{"RSA JWK", `{"kty":"RSA","n":"AQAB","e":"AQAB"}`, "RSA keys are not supported"},
		{"unknown kty", `{"kty":"XYZ"}`, `unsupported kty "XYZ"`},
		{"EC unknown curve", `{"kty":"EC","crv":"P-521","x":"","y":""}`, `unsupported EC curve "P-521"`},
		{"EC no crv", `{"kty":"EC"}`, `without "crv"`},
		{"EC wrong alg", `{"kty":"EC","crv":"P-256","alg":"ES384","x":"` + x + `","y":"` + y + `"}`, `alg "ES384" does not fit an EC P-256 key`},
		{"EC short x", `{"kty":"EC","crv":"P-256","x":"AAAA","y":"` + y + `"}`, `"x" is 3 bytes, want 32`},
		{"EC missing y", `{"kty":"EC","crv":"P-256","x":"` + x + `"}`, `missing "y"`},
		{"EC off curve", `{"kty":"EC","crv":"P-256","x":"` + x + `","y":"` + x + `"}`, "not a point on P-256"},
		{"EC d mismatch", `{"kty":"EC","crv":"P-256","x":"` + x + `","y":"` + y + `","d":"` + b64(d) + `"}`, "does not match"},
		{"OKP wrong curve", `{"kty":"OKP","crv":"X25519","x":"` + b64(edPub) + `"}`, `unsupported OKP curve "X25519"`},
		{"OKP wrong alg", `{"kty":"OKP","crv":"Ed25519","alg":"ES256","x":"` + b64(edPub) + `"}`, "does not fit an Ed25519 key"},
		{"OKP d mismatch", `{"kty":"OKP","crv":"Ed25519","x":"` + b64(edPub) + `","d":"` + b64(otherEd.Seed()) + `"}`, "does not match"},
		{"use enc", `{"kty":"oct","k":"c2VjcmV0","use":"enc","kid":"e1"}`, `JWK "e1": "use" is "enc"`},
		{"key_ops neither", `{"kty":"oct","k":"c2VjcmV0","key_ops":["encrypt"]}`, "neither"},
		{"sign-only", `{"kty":"oct","k":"` + k32 + `","key_ops":["sign"]}`, "no key may verify"},
		{"oct too short", `{"kty":"oct","k":"c2VjcmV0"}`, `"k" is 6 bytes; HMAC needs at least 32 (RFC 7518 §3.2)`},
		{"oct too short for HS512", `{"kty":"oct","alg":"HS512","k":"` + k32 + `"}`, `"k" is 32 bytes; HS512 needs at least 64`},
		{"set not array", `{"keys":{}}`, "not an array"},
		{"set empty", `{"keys":[]}`, "JWK set is empty"},
		{"set bad member", `{"keys":[{"kty":"oct","k":"` + k32 + `"},{"kty":"RSA","kid":"r"}]}`, `key 1: JWK "r": RSA keys`},
		{"JSON not a JWK", `{"name":"moqbridge","version":1}`, `JSON, but not a JWK or JWK set (no "kty" or "keys" member)`},
		{"JSON array", `[{"kty":"oct"}]`, "JSON, but not an object: not a JWK or JWK set"},
		{"raw secret", "0123456789abcdef0123456789abcdef\n", "not a JWK or PEM key"},
		{"text", "line one\nline two\nline three\n", "3 lines of text, not a JWK or PEM key"},
		{"binary", "\xff\xfe\x00\x01 binary", "binary data, not a JWK or PEM key"},
		{"certificate", string(cert), "a certificate, not a key; to verify tokens signed with its key, pass its public key (openssl x509 -pubkey -noout -in "},
		{"DER public key", string(der(x509.MarshalPKIXPublicKey(&ecKey.PublicKey))), "a DER-encoded public key; moqbridge reads PEM (openssl pkey -pubin -inform DER -in "},
		{"DER certificate", string(certDER(t, cert)), "a DER-encoded certificate, not a key; moqbridge reads PEM (openssl x509 -pubkey -noout -inform DER -in "},
		{"OpenSSH", "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n", "OpenSSH key files are not supported"},
		{"base64 JWK broken", b64([]byte(`{"kty":"oct"}`)), `base64url-encoded JWK: JWK (no kid): oct key without "k"`},
		{"PEM garbage", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "PEM block 1 (PUBLIC KEY)"},
		{"PEM no block", "-----BEGIN nothing", "no PEM key block"},
		{"PEM RSA", string(pemBytes(t, "PRIVATE KEY", der(x509.MarshalPKCS8PrivateKey(rsaKey)), nil)), "RSA keys are not supported"},
		{"PEM RSA public", string(pemBytes(t, "PUBLIC KEY", der(x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)), nil)), "RSA keys are not supported"},
		{"PEM P-521", string(pemBytes(t, "EC PRIVATE KEY", der(x509.MarshalECPrivateKey(p521)), nil)), "unsupported EC curve P-521"},
		{"PEM encrypted", "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n", "encrypted private keys"},
		{"PEM unknown type", "-----BEGIN FOO-----\nAAAA\n-----END FOO-----\n", "PEM block 1 (FOO): not a key (want PUBLIC KEY, PRIVATE KEY or EC PRIVATE KEY)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			file := writeFile(t, "key", []byte(c.content))
			_, err := New(Config{KeyFiles: []string{file}})
			if err == nil {
				t.Fatalf("New accepted %q", c.content)
			}
			if !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("New error %q: want the file name and %q", err, c.want)
			}
		})
	}

	missing := filepath.Join(t.TempDir(), "nope.jwk")
	if _, err := New(Config{KeyFiles: []string{missing}}); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("New with a missing file: %v", err)
	}
	if _, err := New(Config{}); err == nil || !strings.Contains(err.Error(), "no key file, no secret file and no public prefix") {
		t.Errorf("New with nothing: %v", err)
	}
}

func TestParseKeysSniffing(t *testing.T) {
	b64 := base64.RawURLEncoding.EncodeToString
	k := b64([]byte("a secret of at least thirty-two bytes"))
	oct := `{"kty":"oct","k":"` + k + `"}`
	cases := []struct {
		name    string
		content []byte
		format  keyFormat
	}{
		{"JWK", []byte("  " + oct + "\n"), formatJWK},
		{"padded base64 JWK", []byte(base64.URLEncoding.EncodeToString([]byte(oct))), formatJWK},
		{"base64 JWK", []byte(b64([]byte(`{"k":"` + k + `"}`))), formatJWK},
		{"JWK set", []byte(`{"keys":[` + oct + `]}`), formatJWKSet},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			keys, format, err := parseKeys("key", c.content)
			if err != nil {
				t.Fatal(err)
			}
			if format != c.format {
				t.Fatalf("format = %d, want %d", format, c.format)
			}
			if string(keys[0].secret) != "a secret of at least thirty-two bytes" {
				t.Fatalf("JWK secret = %q", keys[0].secret)
			}
		})
	}
}

func TestSecretFiles(t *testing.T) {
	const long = "0123456789abcdef0123456789abcdef"
	for _, c := range []struct {
		name    string
		content []byte
		secret  string
	}{
		{"newline", []byte(long + "\n"), long},
		{"CRLF", []byte(long + "\r\n\r\n"), long},
		{"keeps inner and leading space", []byte("  " + long + " \n"), "  " + long + " "},
		{"binary", append([]byte{0xff, '{', 0x00, 0x80}, long...), "\xff{\x00\x80" + long},
		{"base64 word that is not JSON", []byte("c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0\n"), "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"},
		{"brace but not JSON", []byte("{" + long), "{" + long},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := newAuth(t, Config{SecretFiles: []string{writeFile(t, "s", c.content)}})
			if got := string(a.keys[0].secret); got != c.secret {
				t.Fatalf("secret = %q, want %q", got, c.secret)
			}
		})
	}

	hs, _ := GenerateKey("HS256")
	_, _, pubPEM, _ := ecPEM(t, elliptic.P256())
	for _, c := range []struct {
		name, content, want string
		notSecret           bool
	}{
		{"empty", "\n", "the file is empty", false},
		{"short", "hunter2\n", "the secret is 7 bytes; HMAC needs at least 32 (RFC 7518 §3.2): make one with openssl rand -hex 32 > ", false},
		{"31 bytes", long[1:], "the secret is 31 bytes", false},
		{"JWK", string(hs), "a JWK, not a raw secret", true},
		{"JWK set", `{"keys":[` + string(hs) + `]}`, "a JWK set, not a raw secret", true},
		{"PEM public key", string(pubPEM), "a PEM key, not a raw secret", true},
		{"certificate", string(selfSigned(t)), "PEM text, not a raw secret", true},
		{"JSON", `{"password":"` + long + `"}`, "JSON, not a raw secret", true},
		{"base64 JWK", base64.RawURLEncoding.EncodeToString(hs), "a JWK, not a raw secret", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			file := writeFile(t, "s", []byte(c.content))
			_, err := New(Config{SecretFiles: []string{file}})
			var kfe *KeyFileError
			if !errors.As(err, &kfe) || kfe.File != file || !kfe.Secret {
				t.Fatalf("New: %v, want a *KeyFileError for the secret file %s", err, file)
			}
			if !strings.HasPrefix(kfe.Err.Error(), c.want) {
				t.Fatalf("error %q, want it to start with %q", kfe.Err, c.want)
			}
			if errors.Is(err, ErrNotASecret) != c.notSecret {
				t.Fatalf("errors.Is(%v, ErrNotASecret) = %v", err, !c.notSecret)
			}
			if want := "auth: secret file " + file + ": " + kfe.Err.Error(); err.Error() != want {
				t.Fatalf("error %q, want %q", err, want)
			}
		})
	}
}

func TestKeyInfo(t *testing.T) {
	hs, _ := genKey(t, "HS256")
	edPriv, edPub := genKey(t, "EdDSA")
	_, _, ecPub, _ := ecPEM(t, elliptic.P384())
	pemFile := writeFile(t, "ec.pem", ecPub)
	secret := writeFile(t, "s", []byte(strings.Repeat("x", 48)))
	kid := func(file string) string {
		var j jwk
		data, _ := os.ReadFile(file)
		_ = json.Unmarshal(data, &j)
		return j.Kid
	}
	a := newAuth(t, Config{KeyFiles: []string{hs, edPub, edPriv, pemFile}, SecretFiles: []string{secret}})
	want := []KeyInfo{
		{File: hs, Format: "JWK", Algs: []string{"HS256"}, Kid: kid(hs)},
		{File: edPub, Format: "JWK", Algs: []string{"EdDSA"}, Kid: kid(edPub)},
		{File: edPriv, Format: "JWK", Algs: []string{"EdDSA"}, Kid: kid(edPriv), Private: true},
		{File: pemFile, Format: "PEM", Algs: []string{"ES384"}},
		{File: secret, Format: "secret", Algs: []string{"HS256", "HS384"}},
	}
	if got := a.Keys(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Keys() =\n%+v\nwant\n%+v", got, want)
	}
	if p, ok := a.PublicPrefix(); ok || p != "" {
		t.Errorf("PublicPrefix() = %q, %v", p, ok)
	}
	pub := "/live//open/"
	if p, ok := newAuth(t, Config{PublicPrefix: &pub}).PublicPrefix(); !ok || p != "live/open" {
		t.Errorf("PublicPrefix() = %q, %v", p, ok)
	}
}

// selfSigned returns a PEM certificate for a new P-256 key.
func selfSigned(tb testing.TB) []byte {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "relay.example"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	return pemBytes(tb, "CERTIFICATE", der, err)
}

func certDER(tb testing.TB, certPEM []byte) []byte {
	tb.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil {
		tb.Fatal("no PEM block")
	}
	return block.Bytes
}

func TestPublicJWKSet(t *testing.T) {
	a, _ := GenerateKey("ES256")
	b, _ := GenerateKey("EdDSA")
	set := []byte(`{"keys":[` + string(a) + `,` + string(b) + `]}`)
	out, err := PublicJWK(set)
	if err != nil {
		t.Fatal(err)
	}
	var got struct{ Keys []jwk }
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Keys) != 2 || got.Keys[0].D != "" || got.Keys[1].D != "" || got.Keys[0].Kty != "EC" || got.Keys[1].Kty != "OKP" {
		t.Fatalf("PublicJWK(set) = %s", out)
	}
	// The public set verifies tokens from either private key.
	auth := newAuth(t, Config{KeyFiles: []string{writeFile(t, "pub.json", out)}})
	for _, k := range [][]byte{a, b} {
		tok := mint(t, writeFile(t, "k.jwk", k), Claims{Get: []string{""}})
		wantGrant(t, auth, connURL("/x", tok), Grant{Root: "x", Publish: []string{}, Subscribe: []string{""}})
	}
	h, _ := GenerateKey("HS256")
	if _, err := PublicJWK([]byte(`{"keys":[` + string(a) + `,` + string(h) + `]}`)); err == nil {
		t.Error("PublicJWK of a set with an oct key succeeded")
	}
	if _, err := PublicJWK([]byte("just a secret")); err == nil {
		t.Error("PublicJWK of a raw secret succeeded")
	}
	if _, err := PublicJWK([]byte("{")); err == nil {
		t.Error("PublicJWK of bad JSON succeeded")
	}
}
