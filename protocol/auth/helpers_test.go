package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// writeFile writes data to a new file in a test directory and returns its path.
func writeFile(tb testing.TB, name string, data []byte) string {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

// genKey writes a freshly generated private JWK and its verification key
// (the public JWK, or the same file for HMAC) and returns both paths.
func genKey(tb testing.TB, alg string) (private, public string) {
	tb.Helper()
	priv, err := GenerateKey(alg)
	if err != nil {
		tb.Fatalf("GenerateKey(%s): %v", alg, err)
	}
	private = writeFile(tb, "private.jwk", priv)
	if strings.HasPrefix(alg, "HS") {
		return private, private
	}
	pub, err := PublicJWK(priv)
	if err != nil {
		tb.Fatalf("PublicJWK(%s): %v", alg, err)
	}
	return private, writeFile(tb, "public.jwk", pub)
}

func mint(tb testing.TB, keyFile string, c Claims) string {
	tb.Helper()
	tok, err := Mint(keyFile, c)
	if err != nil {
		tb.Fatalf("Mint: %v", err)
	}
	return tok
}

func newAuth(tb testing.TB, cfg Config) *Authorizer {
	tb.Helper()
	a, err := New(cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return a
}

// connURL is the URL a client connecting to path with token would use.
func connURL(path, token string) *url.URL {
	u := &url.URL{Scheme: "https", Host: "relay.example", Path: path}
	if token != "" {
		u.RawQuery = url.Values{"jwt": {token}}.Encode()
	}
	return u
}

// wantGrant checks a successful authorization.
func wantGrant(tb testing.TB, a *Authorizer, u *url.URL, want Grant) {
	tb.Helper()
	got, err := a.Authorize(u)
	if err != nil {
		tb.Fatalf("Authorize(%s): %v", u.Path, err)
	}
	if !reflect.DeepEqual(got, want) {
		tb.Fatalf("Authorize(%s) = %#v, want %#v", u.Path, got, want)
	}
}

// wantRefused checks a refusal that wraps ErrUnauthorized and mentions reason.
func wantRefused(tb testing.TB, a *Authorizer, u *url.URL, reason string) {
	tb.Helper()
	g, err := a.Authorize(u)
	if err == nil {
		tb.Fatalf("Authorize(%s) = %#v, want refusal (%s)", u.Path, g, reason)
	}
	if !errors.Is(err, ErrUnauthorized) {
		tb.Fatalf("Authorize(%s) error %v does not wrap ErrUnauthorized", u.Path, err)
	}
	if !strings.Contains(err.Error(), reason) {
		tb.Fatalf("Authorize(%s) error %q does not mention %q", u.Path, err, reason)
	}
}

// header returns the unverified header of a token.
func header(tb testing.TB, token string) map[string]any {
	tb.Helper()
	tok, _, err := jwt.NewParser().ParseUnverified(token, jwt.MapClaims{})
	if err != nil {
		tb.Fatal(err)
	}
	return tok.Header
}

// signRaw signs arbitrary claims with method and key, bypassing Mint.
func signRaw(tb testing.TB, method jwt.SigningMethod, key any, claims jwt.MapClaims, kid string) string {
	tb.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func pemBytes(tb testing.TB, typ string, der []byte, err error) []byte {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// ecPEM returns PEM encodings of a new EC key on curve: PKCS #8 private,
// SEC 1 private and PKIX public.
func ecPEM(tb testing.TB, curve elliptic.Curve) (pkcs8, sec1, pub []byte, key *ecdsa.PrivateKey) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	pkcs8 = pemBytes(tb, "PRIVATE KEY", der, err)
	der, err = x509.MarshalECPrivateKey(key)
	sec1 = pemBytes(tb, "EC PRIVATE KEY", der, err)
	der, err = x509.MarshalPKIXPublicKey(&key.PublicKey)
	pub = pemBytes(tb, "PUBLIC KEY", der, err)
	return pkcs8, sec1, pub, key
}

// edPEM returns PEM encodings of a new Ed25519 key: PKCS #8 private and
// PKIX public.
func edPEM(tb testing.TB) (pkcs8, pub []byte, key ed25519.PrivateKey) {
	tb.Helper()
	pk, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	pkcs8 = pemBytes(tb, "PRIVATE KEY", der, err)
	der, err = x509.MarshalPKIXPublicKey(pk)
	pub = pemBytes(tb, "PUBLIC KEY", der, err)
	return pkcs8, pub, key
}
