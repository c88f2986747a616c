package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
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
		{"sign-only", `{"kty":"oct","k":"c2VjcmV0","key_ops":["sign"]}`, "no key may verify"},
		{"set not array", `{"keys":{}}`, "not an array"},
		{"set empty", `{"keys":[]}`, "JWK set is empty"},
		{"set bad member", `{"keys":[{"kty":"oct","k":"c2VjcmV0"},{"kty":"RSA","kid":"r"}]}`, `key 1: JWK "r": RSA keys`},
		{"base64 JWK broken", b64([]byte(`{"kty":"oct"}`)), `base64url-encoded JWK: JWK (no kid): oct key without "k"`},
		{"PEM garbage", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "PEM block 1 (PUBLIC KEY)"},
		{"PEM no block", "-----BEGIN nothing", "no PEM key block"},
		{"PEM RSA", string(pemBytes(t, "PRIVATE KEY", der(x509.MarshalPKCS8PrivateKey(rsaKey)), nil)), "RSA keys are not supported"},
		{"PEM RSA public", string(pemBytes(t, "PUBLIC KEY", der(x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)), nil)), "RSA keys are not supported"},
		{"PEM P-521", string(pemBytes(t, "EC PRIVATE KEY", der(x509.MarshalECPrivateKey(p521)), nil)), "unsupported EC curve P-521"},
		{"PEM encrypted", "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n", "encrypted private keys"},
		{"PEM unknown type", "-----BEGIN FOO-----\nAAAA\n-----END FOO-----\n", "unsupported PEM block type"},
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
	if _, err := New(Config{}); err == nil || !strings.Contains(err.Error(), "no key file and no public prefix") {
		t.Errorf("New with nothing: %v", err)
	}
}

func TestParseKeysSniffing(t *testing.T) {
	b64 := base64.RawURLEncoding.EncodeToString
	cases := []struct {
		name    string
		content []byte
		format  keyFormat
		secret  string // for formatSecret
	}{
		{"secret with newline", []byte("hunter2\n"), formatSecret, "hunter2"},
		{"secret with CRLF", []byte("hunter2\r\n\r\n"), formatSecret, "hunter2"},
		{"secret keeps inner and leading space", []byte("  two words \n"), formatSecret, "  two words "},
		{"binary secret", []byte{0xff, '{', 0x00, 0x80, '\n'}, formatSecret, "\xff{\x00\x80"},
		{"base64 word that is not JSON", []byte("c2VjcmV0\n"), formatSecret, "c2VjcmV0"},
		{"JWK", []byte(`  {"kty":"oct","k":"c2VjcmV0"}` + "\n"), formatJWK, ""},
		{"padded base64 JWK", []byte(base64.URLEncoding.EncodeToString([]byte(`{"kty":"oct","k":"c2VjcmV0"}`))), formatJWK, ""},
		{"base64 JWK", []byte(b64([]byte(`{"k":"c2VjcmV0"}`))), formatJWK, ""},
		{"JWK set", []byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`), formatJWKSet, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			keys, format, err := parseKeys(c.content)
			if err != nil {
				t.Fatal(err)
			}
			if format != c.format {
				t.Fatalf("format = %d, want %d", format, c.format)
			}
			if c.format == formatSecret && string(keys[0].secret) != c.secret {
				t.Fatalf("secret = %q, want %q", keys[0].secret, c.secret)
			}
			if c.format != formatSecret && string(keys[0].secret) != "secret" {
				t.Fatalf("JWK secret = %q", keys[0].secret)
			}
		})
	}
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
